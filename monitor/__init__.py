"""llm-monitor: the terminal dashboard of the llm-mcp daemon (Textual).

It talks to the daemon over its socket only (llm_mcp.clients.client); it never imports
Docker or NVML.
"""

from monitor.app import MonitorApp, make_app
from monitor.connection import ClientFactory, MonitorClient

__all__ = ["ClientFactory", "MonitorApp", "MonitorClient", "make_app"]
