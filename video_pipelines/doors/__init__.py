"""The front ends people use: the `video-pipelines` CLI, the Python client, the HTTP API client, the demo and dev
commands.
"""
