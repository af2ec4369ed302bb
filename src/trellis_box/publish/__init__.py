"""Publishing the image to Amazon ECR."""
