from s3server import s3_server  # noqa: F401  (a session fixture: the real S3 server)
