"""Optuna studies over any recsys model: YAML study specs, a pruned objective, resumable storage and reports.

``recsys tune --config experiments/ml-100k/tune-mf-bpr.yaml --storage sqlite:///studies.db --study-name x``
runs a study; ``recsys tune --show …`` writes its report. Import the submodules (`spec`, `objective`, `study`,
`report`) directly; this package imports nothing heavy.
"""
