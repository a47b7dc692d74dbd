"""Installs the toolkit as the single package `slimkit`.

The repository keeps TF-Slim's top-level folders (`nets/`, `datasets/`,
`preprocessing/`, `deployment/`) for people who run the scripts from a clone.
Installed, those folders become subpackages of `slimkit` (`slimkit.datasets`,
...), so installing never writes a top-level `datasets` package that would
overwrite or shadow Hugging Face's `datasets`. The command-line scripts are
installed as commands of the same names.
"""

import os

import setuptools

_SUBPACKAGES = ('nets', 'datasets', 'preprocessing', 'deployment')
_SCRIPTS = ('train_image_classifier.py', 'eval_image_classifier.py',
            'download_and_convert_data.py', 'export_inference_graph.py',
            'classify_image.py', 'print_model.py', 'compare_methods.py')


def _version():
  with open(os.path.join('slimkit', '__init__.py')) as f:
    for line in f:
      if line.startswith('__version__'):
        return line.split('=')[1].strip().strip("'")
  raise RuntimeError('no __version__ in slimkit/__init__.py')


setuptools.setup(
    name='slimkit',
    version=_version(),
    description=('TF-Slim\'s image-classification workflow on TensorFlow 2 / '
                 'Keras 3: convert, train, evaluate, export.'),
    long_description=open('README.md').read() if os.path.exists(
        'README.md') else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=(['slimkit', 'slimkit.study', 'slimkit.training',
               'slimkit.export', 'slimkit.flags'] +
              [f'slimkit.{p}' for p in _SUBPACKAGES]),
    package_dir={'slimkit': 'slimkit',
                 **{f'slimkit.{p}': p for p in _SUBPACKAGES}},
    package_data={'slimkit.datasets': ['data/*.npz', 'data/README.md']},
    scripts=[s for s in _SCRIPTS if os.path.exists(s)],
    install_requires=[
        'tensorflow>=2.16',  # ships Keras 3
        'numpy',
        'absl-py',
        'tensorboard',
        # The plots of compare_methods.py's reports.
        'matplotlib',
        # The statistics of those reports: t intervals and tests, the
        # noncentral t of the seeds-needed advice.
        'scipy',
    ],
    extras_require={
        # The maintained TFLite runtime (LiteRT). TensorFlow 2.21 still
        # bundles a deprecated tf.lite.Interpreter, used when this is absent.
        'tflite': ['ai-edge-litert'],
        # compare_methods.py --backend=ray: studies on a Ray cluster (Tune's
        # trials and schedulers; Train places multi-worker runs).
        'ray': ['ray[tune,train]>=2.60'],
        'test': [
            'pytest',
            # Parallel test processes: most tests start a script or train a
            # tiny net, and a core is often left waiting on one of them.
            'pytest-xdist',
            # Fabricates the CMYK JPEGs real ImageNet has (TF cannot write
            # them).
            'pillow',
            # Execute notebooks/ headless, as a reader would run them.
            'nbclient', 'nbformat', 'ipykernel',
            # The lint .ci/run runs before the tests (pyproject.toml). Ruff's
            # minor releases add and change rules: one minor line, so a new
            # release cannot fail CI on unchanged code.
            'ruff>=0.17,<0.18',
            # tests/test_study_ray.py: studies on a simulated Ray cluster.
            'ray[tune,train]>=2.60',
        ],
    },
    license='Apache-2.0',
)
