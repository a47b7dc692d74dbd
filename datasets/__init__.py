"""Dataset descriptions, TFRecord converters and the tf.data input pipeline."""
