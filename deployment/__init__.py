"""Model deployment over tf.distribute, as TF-Slim's `deployment/` did.

Clones, workers and parameter servers: the strategy from flags
(`model_deploy`), cluster addresses (`cluster`), what synchronous workers
agree on (`collectives`). Training itself is in
`slimkit.training`, evaluation in `slimkit.evaluator`, export in
`slimkit.export`.
"""
