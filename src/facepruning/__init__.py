"""facepruning: Taylor-score filter pruning of face-recognition CNNs.

The open, runnable companion to
- "SqueezerFaceNet: Reducing a Small Face Recognition CNN Even More Via Filter Pruning"
  (Alonso-Fernandez et al., arXiv 2307.10697), and
- "Deep Network Pruning: A Comparative Study on CNNs in Face Recognition"
  (Alonso-Fernandez et al., arXiv 2405.18302).

One module per concept: ``sources``, ``protocols``, ``manifest`` and ``images`` prepare the
data; ``loaders`` feeds it; ``models`` builds the backbones; ``training`` trains them;
``verification`` measures them; ``scoring`` ranks filters; ``surgery`` removes them;
``pruning`` runs the iterative loop; ``distributed`` spreads it over processes; ``stages`` are
the pipeline's steps as functions; ``analysis`` and ``plots`` report; ``artifacts`` writes files
safely. docs/ARCHITECTURE.md has the map.
"""

__version__ = "0.1.0"
