"""Benchmarks of gatehouse against stock amqtt: each module a script that prints a table
and writes its figures to benchmarks/results/. They start the brokers with
`simulators.launch` and import nothing of the tests."""
