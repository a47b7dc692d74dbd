"""The installable name of this toolkit.

From a clone, the library lives in the top-level folders `nets/`, `datasets/`,
`preprocessing/` and `deployment/`, as it did in TF-Slim. Installed with pip,
the same folders become `slimkit.nets`, `slimkit.datasets`, ... so that no
top-level package named `datasets` (the name of Hugging Face's library) or
`nets` is ever written into site-packages.

All code imports through `slimkit.` so that it runs the same either way. From a
clone this package's search path is extended with the repository root: then
`slimkit.datasets` is the `datasets/` folder beside this one.
"""

import os as _os

__version__ = '0.1.0'

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_ROOT = _os.path.dirname(_HERE)

# Installed, the subpackages sit inside this folder; in a clone they sit
# beside it.
if not _os.path.isdir(_os.path.join(_HERE, 'nets')) and _os.path.isdir(
    _os.path.join(_ROOT, 'nets')):
  __path__.append(_ROOT)
