"""Test and load harnesses, imported from the checkout (not installed with the package).

packet_fuzz (hostile packets for the decoder, tiny deterministic models), lossy_link and delay_relay
(a lossy, delaying link between network namespaces), link_runs and link_probe (DDS across it),
node_link_runs (the real nodes across it), node_load and resource_monitor (soak and overload runs).
"""
