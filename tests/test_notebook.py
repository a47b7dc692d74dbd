"""Executes the walkthrough notebook headless, as a user would run it."""

import os

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'slimkit_walkthrough.ipynb')
STUDY_NOTEBOOK = os.path.join(ROOT, 'notebooks', 'compare_methods.ipynb')


def _outputs(notebook):
  text = []
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      text.append(output.get('text', ''))
      text.append(str(output.get('data', {}).get('text/plain', '')))
  return '\n'.join(text)


def test_walkthrough_runs_offline_from_the_notebooks_folder(tmp_path,
                                                          monkeypatch):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      notebook, timeout=300, kernel_name='python3',
      # From notebooks/, as someone who opened it in Jupyter from a clone.
      resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}})
  # The kernel inherits the environment: its temporary files go to tmp_path.
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  client.execute()

  text = _outputs(notebook)
  assert 'Restored 8 variables' in text
  accuracy = float(text.split('test accuracy: ')[1].split()[0])
  assert accuracy > 0.5  # Trained, not chance (0.1).
  assert 'LeNet/fc4/weights: checkpoint [1024, 10], net [1024, 2]' in text
  assert 'excluded 2' in text
  assert 'fc3 unchanged: True' in text
  assert 'No checkpoint at /tmp/checkpoints/inception_v3.ckpt' in text



@pytest.mark.slow  # ~90 s: a 4-run study; the report tests cover its content
def test_the_study_notebook_shows_the_report_and_the_plots(tmp_path,
                                                           monkeypatch):
  notebook = nbformat.read(STUDY_NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      notebook, timeout=600, kernel_name='python3',
      resources={'metadata': {'path': os.path.dirname(STUDY_NOTEBOOK)}})
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  client.execute()

  markdown = [o['data']['text/markdown'] for cell in notebook.cells
              for o in cell.get('outputs', []) if 'text/markdown' in
              o.get('data', {})]
  table = [line for line in markdown[0].splitlines()
           if line.startswith('| 1 |') or line.startswith('| 2 |')]
  assert len(table) == 2 and {l.split('|')[2].strip() for l in table} == {
      '1.0', '1e-8'}
  images = [o for cell in notebook.cells for o in cell.get('outputs', [])
            if 'image/png' in o.get('data', {})]
  assert len(images) == 4  # the forest plot and three learning curves
  text = _outputs(notebook)
  assert 'final accuracy' in text
  assert 'n=2: no significance can be claimed' in markdown[0]
  assert 'opt_epsilon=1e-8: ' in text and '95% CI [' in text
