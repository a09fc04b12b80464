"""The example workflows (example_workflows/*.json) as data, and the script that writes them."""
