"""Device and gateway simulators and the load runner.

Empty until the simulators issue lands; kept so the layout matches design.md.
"""
