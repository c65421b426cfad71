"""Fault injection for integration tests: proxies in front of the real SQS server and Kafka
broker that fail chosen calls, throttle, stall or cut connections (tests only)."""
