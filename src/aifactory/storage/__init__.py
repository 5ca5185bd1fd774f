"""The site's in-country S3 object store: desired buckets (spec), boto3 operations (s3, buckets),
the Pulumi dynamic provider (provider) and the evidence store (evidence)."""
