"""The Ray backend: a workspace's run queue served by a Ray cluster (``fusionlab worker --backend ray``).

Small modules, each for one side of the wire, none importing Ray at module level (fusionlab must import and
run without Ray installed; only :meth:`dispatcher.Dispatcher.start` and the functions that run on a node
import it):

* :mod:`~fusionlab.ray_backend.messages` — what crosses: :class:`RunPayload`, :class:`Report`,
  :class:`RunOutcome` (typed, validated, versioned JSON) and the rule for paths that cross;
* :mod:`~fusionlab.ray_backend.files` — the workspace side of a run's files: inputs gathered, artifacts
  published with the tmp-then-rename rule;
* :mod:`~fusionlab.ray_backend.remote` — the node side: the Ray task and the report channel;
* :mod:`~fusionlab.ray_backend.dispatcher` — the process that claims, sends, follows, retries and publishes.

See ``docs/scaling.md`` for how to start a cluster and what runs where.
"""
