"""Where the HTTP API listens: "HOST:PORT" parsing and the one rule for which setting wins.

Pure functions: config.py checks models.conf's [daemon] http with them, the daemon
chooses between its --http flag, $LLM_MCP_HTTP and models.conf with them.
"""

from __future__ import annotations

import ipaddress

Bind = tuple[str, int]
OFF = frozenset({"", "off", "none", "no", "false"})  # $LLM_MCP_HTTP=off turns a models.conf setting off


def parse_bind(text: str, allow_remote: bool = False) -> Bind:
    """"HOST:PORT" (or "[v6]:PORT", or just "PORT" for 127.0.0.1) -> (host, port).

    A host that is not loopback is refused unless `allow_remote`: the API has no
    authentication and switching models is not something a network should do.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"'{text}' is not HOST:PORT (IPv6 hosts look like [::1]:8765)")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"'{text}': put an IPv6 host in brackets, e.g. [::1]:8765")
    else:
        host, port_text = "127.0.0.1", text
    host = host or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"'{port_text}' in '{text}' is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"refusing to serve HTTP on {host}: it is not a loopback address and the API "
                         "has no authentication; use 127.0.0.1, or pass --allow-remote to expose it")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: can't know without resolving


def show(bind: Bind) -> str:
    host, port = bind
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def choose_http(flag: Bind | None, env: str | None, conf: str | None, allow_remote: bool) -> Bind | None:
    """The HTTP address a daemon serves: --http, else $LLM_MCP_HTTP, else models.conf's [daemon] http.

    Every daemon (also one a client starts) honours the environment and models.conf,
    so the API survives restarts. Raises ValueError naming $LLM_MCP_HTTP when it is bad.
    """
    if flag is not None:
        return flag
    if env is not None:
        if env.strip().lower() in OFF:
            return None
        try:
            return parse_bind(env, allow_remote=allow_remote)
        except ValueError as exc:
            raise ValueError(f"LLM_MCP_HTTP={env!r}: {exc}".replace(
                "pass --allow-remote", "set http_allow_remote = true in models.conf's [daemon] section")
            ) from None
    if conf:
        return parse_bind(conf, allow_remote=True)  # checked against http_allow_remote when parsed
    return None
