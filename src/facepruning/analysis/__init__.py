"""Tables and statistics of the cross-run analysis (notebook 04): from metric files to numbers.

Ten modules, one concern each; each depends only on those listed above it:

``runs``
    Loading the runs: :func:`load_prune_runs` (:class:`PruneRun`; what a run is, its display
    label included, comes from its metrics JSON), :func:`load_train_runs`,
    :func:`combined_history`, :func:`check_histories`, :func:`run_inventory`,
    :func:`params_removed_pct`; :func:`main_runs`
    (the papers' setup per network) and :func:`control_runs`; :func:`load_scores`
    (:class:`RunScores`, every test pair's score at every history row), :func:`check_scores`,
    :func:`load_runs_with_scores`.
``intervals``
    Identity-bootstrap intervals (:mod:`facepruning.statistics`): :func:`counts_for`,
    :func:`point_intervals`, :func:`paired_difference_at` (paired between rows and runs on the
    same resamples), :func:`interval_table`; :func:`eer_standard_error`; :func:`finite_or_none`,
    :func:`fmt_interval`, :func:`interval_side`.
``pooling``
    Replicate training runs (other folds, other seeds) pooled into one interval: :class:`Units`,
    :func:`pool` (:class:`Pooled`), :func:`expanded_interval`, :func:`unit_of`,
    :func:`replicate_groups`, :func:`fold_counts` (the stratified identity resamples).
``coverage``
    Do the intervals mean what they say? :func:`interval_coverage` (:class:`Coverage`) on
    :func:`simulate_scores` sets with a known :func:`population_eer`.
``width``
    Do the widest layers lose filters first? :func:`width_order`, :func:`width_rank_summary`
    (:func:`spearman`, :func:`permutation_pvalue`), :func:`width_null_position` (the observed rho
    against random scores through the run's selection, as drawn and normalised per layer).
``selection``
    The smallest network within a tolerance: :func:`smallest_within_tolerance`,
    :func:`largest_removal_within_tolerance`, :func:`squeezerfacenet_pick`;
    :func:`interpolate_at`; :func:`squeezenet_classifier_params`, :func:`squeezenet_param_split`.
``criteria``
    :func:`criteria_comparison`: the criteria on one network at matched shares removed.
``claims``
    :func:`verdict`, :func:`judge_claims`: holds / refuted / inconclusive for the claims C1-C7 of
    docs/PAPERS.md (:data:`CLAIMS`), by whether the 95% interval clears each claim's threshold;
    :func:`claims_table`, :func:`numbers_of`, :func:`decided_by`.
``curves``
    :func:`change_curves`: every step's paired change from the original or from the control,
    pooled over training runs like the claims (the curves behind the verdicts).
``summary``
    :func:`summarize` (:class:`Summary`), :func:`headline`, :func:`write_summary`:
    ``metrics/analysis.json`` and its CSV tables (:func:`baseline_table`,
    :func:`layer_width_table`, :func:`layer_steps_table`, :func:`curve_table`).

The public names of all of them are importable from here: ``from facepruning import analysis;
analysis.summarize(...)``.
"""

from .claims import (
    CLAIMS,
    PAPERS_REPORT,
    VERDICTS,
    claims_table,
    decided_by,
    judge_claims,
    numbers_of,
    verdict,
)
from .coverage import Coverage, interval_coverage, population_eer, simulate_scores
from .criteria import criteria_comparison
from .curves import change_curves
from .intervals import (
    INTERVAL_METRICS,
    counts_for,
    eer_standard_error,
    finite_or_none,
    fmt_interval,
    interval_side,
    interval_table,
    paired_difference_at,
    point_intervals,
)
from .pooling import (
    INTERVAL_METHOD,
    Pooled,
    Units,
    expanded_interval,
    fold_counts,
    pool,
    replicate_groups,
    unit_of,
)
from .runs import (
    CONTROL_CRITERION,
    HISTORY_SUFFIX,
    LAYERS_SUFFIX,
    MAIN_CRITERION,
    ORIGINAL,
    RUN_KEYS,
    SCORES_KEYS,
    PruneRun,
    RunScores,
    check_histories,
    check_scores,
    combined_history,
    control_runs,
    load_prune_runs,
    load_runs_with_scores,
    load_scores,
    load_train_runs,
    main_runs,
    params_removed_pct,
    run_inventory,
    run_labels,
)
from .selection import (
    interpolate_at,
    largest_removal_within_tolerance,
    smallest_within_tolerance,
    squeezenet_classifier_params,
    squeezenet_param_split,
    squeezerfacenet_pick,
)
from .summary import (
    METRIC_KEYS,
    SCHEMA,
    Summary,
    baseline_table,
    curve_table,
    headline,
    layer_steps_table,
    layer_width_table,
    summarize,
    write_summary,
)
from .width import (
    permutation_pvalue,
    spearman,
    width_null_position,
    width_order,
    width_rank_summary,
)

__all__ = [
    # runs
    "HISTORY_SUFFIX",
    "LAYERS_SUFFIX",
    "RUN_KEYS",
    "MAIN_CRITERION",
    "CONTROL_CRITERION",
    "ORIGINAL",
    "PruneRun",
    "load_prune_runs",
    "load_runs_with_scores",
    "params_removed_pct",
    "main_runs",
    "control_runs",
    "load_train_runs",
    "combined_history",
    "check_histories",
    "run_inventory",
    "run_labels",
    "SCORES_KEYS",
    "RunScores",
    "load_scores",
    "check_scores",
    # intervals
    "INTERVAL_METRICS",
    "finite_or_none",
    "fmt_interval",
    "interval_side",
    "eer_standard_error",
    "point_intervals",
    "paired_difference_at",
    "counts_for",
    "interval_table",
    # pooling
    "INTERVAL_METHOD",
    "Units",
    "Pooled",
    "pool",
    "expanded_interval",
    "unit_of",
    "replicate_groups",
    "fold_counts",
    # coverage
    "Coverage",
    "simulate_scores",
    "population_eer",
    "interval_coverage",
    # width
    "spearman",
    "permutation_pvalue",
    "width_order",
    "width_rank_summary",
    "width_null_position",
    # selection
    "smallest_within_tolerance",
    "largest_removal_within_tolerance",
    "interpolate_at",
    "squeezenet_classifier_params",
    "squeezenet_param_split",
    "squeezerfacenet_pick",
    # criteria
    "criteria_comparison",
    # claims
    "CLAIMS",
    "PAPERS_REPORT",
    "VERDICTS",
    "verdict",
    "judge_claims",
    "claims_table",
    "numbers_of",
    "decided_by",
    # curves
    "change_curves",
    # summary
    "SCHEMA",
    "METRIC_KEYS",
    "Summary",
    "summarize",
    "headline",
    "write_summary",
    "baseline_table",
    "layer_width_table",
    "layer_steps_table",
    "curve_table",
]
