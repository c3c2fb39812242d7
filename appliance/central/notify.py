"""Telling the Director at once: alerts leave the appliance by e-mail and/or a command.

Breach reports, imminent-danger use, a camera offline or moved, a broken chain and a
disk near full must reach the Director immediately, not only on the next screen she
opens. Each alert becomes an outbox entry; delivery is tried at once in a worker
thread and retried with backoff until it succeeds. Every attempt is in the audit log.

Settings ([central] in the TOML file):
    notify_command   a program run with the alert as JSON on stdin (e.g. a pager script)
    smtp_host, smtp_port, smtp_from, notify_email   the library's own SMTP server
Nothing is sent off-site but the alert text itself: never footage, never stills.
"""
from __future__ import annotations

import json
import logging
import shlex
import smtplib
import subprocess
import threading
from datetime import timedelta
from email.message import EmailMessage

from appliance.background import every
from appliance.rules.registry import iso, parse_iso
from appliance.wording import when

log = logging.getLogger("custodian.notify")

RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
RETRY_CHECK_SECONDS = 10           # how often deliveries due for a retry are looked for
COMMAND_TIMEOUT = 30


class Notifier:
    def __init__(self, central):
        self.central = central
        self._kick = threading.Event()
        self._lock = threading.Lock()

    @property
    def channels(self) -> list[str]:
        c = self.central.cfg.central
        return [name for name, on in (("command", c.notify_command), ("email", c.smtp_host and c.notify_email)) if on]

    def notify(self, alert: dict) -> None:
        """Queue one alert on every configured channel and try to deliver it now."""
        for channel in self.channels:
            self.central.records.insert("outbox", {
                "alert": alert["id"], "channel": channel, "attempts": 0, "delivered_at": None,
                "next_try": iso(self.central.now()), "last_error": None})
        if self.channels:
            threading.Thread(target=self.deliver_due, name="notify", daemon=True).start()

    def deliver_due(self) -> int:
        """Try every undelivered entry whose time has come. Returns how many were delivered."""
        delivered = 0
        with self._lock:
            now = self.central.now()
            due = [e for e in self.central.records.all("outbox")
                   if e["delivered_at"] is None and parse_iso(e["next_try"]) <= now]
            for entry in due:
                alert = self.central.records.get("alerts", entry["alert"])
                if alert is None:
                    continue
                try:
                    self._send(entry["channel"], alert)
                except Exception as e:  # any failure is retried; the reason is kept
                    attempts = entry["attempts"] + 1
                    wait = min(RETRY_BASE * (2 ** (attempts - 1)), RETRY_MAX)
                    self.central.records.update("outbox", entry["id"], {
                        "attempts": attempts, "last_error": str(e)[:500], "next_try": iso(now + wait)})
                    self.central.audit.append("system", "notify.failed", target=entry["alert"],
                                              details={"channel": entry["channel"], "attempt": attempts,
                                                       "error": str(e)[:200]})
                    log.warning("notification %s via %s failed: %s", entry["alert"], entry["channel"], e)
                else:
                    self.central.records.update("outbox", entry["id"], {
                        "attempts": entry["attempts"] + 1, "delivered_at": iso(self.central.now())})
                    self.central.audit.append("system", "notify.delivered", target=entry["alert"],
                                              details={"channel": entry["channel"]})
                    delivered += 1
        return delivered

    def _send(self, channel: str, alert: dict) -> None:
        cfg = self.central.cfg.central
        text = f"[Custodian] {alert['kind']}: {alert['message']}"
        if channel == "command":
            result = subprocess.run(shlex.split(cfg.notify_command), input=json.dumps(alert).encode(),
                                    capture_output=True, timeout=COMMAND_TIMEOUT)
            if result.returncode != 0:
                raise RuntimeError(f"notify command exited {result.returncode}: "
                                   f"{result.stderr.decode(errors='replace')[:200]}")
        elif channel == "email":
            msg = EmailMessage()
            msg["Subject"] = text[:120]
            msg["From"] = cfg.smtp_from
            msg["To"] = cfg.notify_email
            msg.set_content(f"{alert['message']}\n\nAt {when(alert['at'])}. Open the Custodian console for details.\n")
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=COMMAND_TIMEOUT) as smtp:
                smtp.send_message(msg)
        else:
            raise RuntimeError(f"unknown channel {channel}")

    def periodic(self):
        return [every(RETRY_CHECK_SECONDS, self.deliver_due, name="alert delivery retries", wait_first=True)]
