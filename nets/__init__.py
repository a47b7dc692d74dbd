"""Image-classification nets with TF-Slim's architectures and variable names."""
