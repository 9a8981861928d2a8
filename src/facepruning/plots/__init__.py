"""Figures of the notebooks: one module per pipeline stage, one function per kind of figure, each
returning a matplotlib Figure.

============================  ===========================================================
:mod:`~.style`                every stage: colours, line styles, readable names of networks,
                              stages and metrics (:func:`~.style.label`), and
                              :func:`~.style.save_figure` (byte for byte reproducible files)
:mod:`~.training`             notebook 02, baseline training: training curves, ROC curves,
                              score distributions
:mod:`~.pruning`              notebook 03, Taylor pruning: pruning curves, channels left per
                              layer, the worked Taylor example
:mod:`~.analysis`             notebook 04, analysis: curves and forests with 95% intervals,
                              the width claim's nulls, layers, descriptor sizes, the
                              tolerance selection
============================  ===========================================================

Notebook 01 draws its own figures with matplotlib and uses :mod:`~.style` alone.

This package imports none of its modules, so that a pipeline stage depends (in ``dvc.yaml``) on
``style.py`` and its own module only: editing one stage's figures reruns that stage alone. Import
the modules by name::

    from facepruning.plots import style
    from facepruning.plots import training as plots

The figure functions take plain tables (pandas DataFrames of histories, arrays of scores) so that
the notebooks decide what to show and this package only decides how it looks. Criterion and run
names are not known here: the functions that draw one curve or row per run take their display
texts from the caller (a ``labels`` mapping).
"""
