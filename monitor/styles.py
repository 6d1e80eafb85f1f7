"""The dashboard's layout and colours (kept in Python so a wheel needs no data files)."""

from monitor.widgets.switch_panel import MAX_SHARE

APP_CSS = """
/* llm-monitor: header, GPU + system panels, switch panel, log, footer. */

#panels {
    height: auto;
}

/* No GPU: a line or two of notice instead of a box, and the system panel at full width. */
#panels.no-gpu {
    layout: vertical;
}

#panels.no-gpu #gpu {
    width: 100%;
    border: none;
    padding: 0 1;
}

#panels.no-gpu #system {
    width: 100%;
    height: auto;
}

#gpu {
    width: 2fr;
    height: auto;
    border: round $primary 60%;
    border-title-color: $text;
    padding: 0 1;
}

#system {
    width: 1fr;
    height: 100%;
    border: round $primary 60%;
    border-title-color: $text;
    padding: 0 1;
}

#switch {
    border: round $warning;
    display: none;
    max-height: SWITCH_SHARE;  /* of the room below the panels: the log keeps the rest */
}

#switch.failed {
    border: round $error;
}

#log-box {
    height: 1fr;
}

#log {
    height: 1fr;
    min-height: 5;  /* three rows of log under any panel */
    border: round $primary 60%;
    border-title-color: $text;
    border-subtitle-color: $text-muted;
}

#log:focus {
    border: round $primary;
}

#filter {
    display: none;
    margin: 0 1;
}
""".replace("SWITCH_SHARE", f"{round(MAX_SHARE * 100)}%")
