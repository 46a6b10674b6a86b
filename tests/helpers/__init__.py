"""Test helpers (not tests): the fault-injecting S3 proxy."""
