"""The overlays: model picker, bench comparison, confirmation, help, which model to stop."""

from monitor.screens.compare import CompareScreen
from monitor.screens.confirm import ConfirmScreen
from monitor.screens.help import HelpScreen
from monitor.screens.picker import Pick, PickerScreen
from monitor.screens.stop_picker import StopPickerScreen

__all__ = ["CompareScreen", "ConfirmScreen", "HelpScreen", "Pick", "PickerScreen", "StopPickerScreen"]
