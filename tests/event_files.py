"""Reads summaries with TF's own summary iterator: the tests' independent
reference for what a run wrote (the library reads them its own way)."""

import glob
import os

import tensorflow as tf


def scalars(directory, tag):
  """`{step: value}` of `tag` in the event files of `directory`."""
  found = {}
  for path in sorted(glob.glob(os.path.join(str(directory), 'events.out.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          found[event.step] = float(tf.make_ndarray(value.tensor))
  return found
