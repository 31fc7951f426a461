import os
import sys

# tests/support/gswarm_server.py starts real servers for the suites.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
