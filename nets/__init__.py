"""Image-classification networks with TF-Slim's architectures and variable names."""
