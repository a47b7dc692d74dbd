"""Model deployment over tf.distribute: clones, workers and the train step."""
