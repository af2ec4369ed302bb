"""More than one machine: AWS Batch array jobs over S3, one shard of the inputs per child."""
