"""The dashboard's panels."""

from monitor.widgets.gpu_panel import GpuPanel
from monitor.widgets.log_view import LogView
from monitor.widgets.model_rows import ModelRows
from monitor.widgets.status_bar import StatusBar
from monitor.widgets.switch_panel import SwitchPanel
from monitor.widgets.system_panel import SystemPanel

__all__ = ["GpuPanel", "LogView", "ModelRows", "StatusBar", "SwitchPanel", "SystemPanel"]
