"""Devices that come and go (Bonawitz et al. 2019), simulated by
:mod:`fedlearn.server.availability`."""
from __future__ import annotations

from dataclasses import dataclass

from fedlearn.config.fields import Section, number, option


@dataclass(frozen=True, kw_only=True)
class AvailabilityConfig(Section):
    """A population of devices: eligibility, over-selection, declines, drop-outs and network
    speed; ``federation.fraction`` sets the reporting goal."""

    SECTION = "availability"
    TITLE = "devices that come and go (simulated; on with --availability or any of these)"

    mean_availability: float = option(0.5, help="share of rounds a device is idle, charging "
                                                "and unmetered")
    over_selection: float = option(1.3, help="select this many times the reporting goal")
    decline_rate: float = option(0.05, help="a selected device says no (user activity, battery)")
    dropout_rate: float = option(0.05, help="a device that accepted vanishes mid-round")
    deadline: float | None = option(None, metavar="SECONDS", help="simulated seconds a round "
                                    "waits; later reports are discarded")
    download_mbps: float = option(20.0, help="median download bandwidth")
    upload_ratio: float = option(0.2, help="upload = ratio x download (asymmetric links)")
    bandwidth_spread: float = option(0.8, help="sigma of the log-normal spread between devices")
    examples_per_second: float = option(500.0, help="median local training speed")

    def validate(self) -> None:
        number(self.mean_availability, "mean_availability", 0, 1, low_open=True)
        number(self.over_selection, "over_selection", 1)
        number(self.decline_rate, "decline_rate", 0, 1, high_open=True)
        number(self.dropout_rate, "dropout_rate", 0, 1, high_open=True)
        if self.deadline is not None:
            number(self.deadline, "deadline", 0, low_open=True)
        number(self.download_mbps, "download_mbps", 0, low_open=True)
        number(self.upload_ratio, "upload_ratio", 0, low_open=True)
        number(self.bandwidth_spread, "bandwidth_spread", 0)
        number(self.examples_per_second, "examples_per_second", 0, low_open=True)
