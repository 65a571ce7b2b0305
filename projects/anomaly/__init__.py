"""Log anomaly detection on HDFS logs in Loghub's HDFS_v1 format (default data: a simulator)."""
