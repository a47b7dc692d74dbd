"""int8 calibration says how far it is."""

import logging

import numpy as np

from slimkit.export import tflite


def test_calibration_logs_progress_and_time_left(caplog):
  caplog.set_level(logging.INFO, logger='absl')
  images = [np.zeros((4, 4, 1), np.float32)] * 3
  generate = tflite._representative(images, 4, 1, total=3, log_every_secs=0)
  assert len(list(generate())) == 3
  said = [r.getMessage() for r in caplog.records]
  assert said[0].startswith('int8 calibration: running 3 preprocessed')
  assert 'int8 calibration: 2/3 images, 0:00:00 left.' in said
  assert said[-1].startswith('int8 calibration: 3 images in ')
