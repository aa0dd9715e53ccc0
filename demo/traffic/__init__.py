"""Engine-like voucher traffic: `VoucherTraffic` writes the rows, values and transactions the
voucher engine's API calls write (see the engine notes, voucher_engine.md), for demos, crash-safety
tests and benchmarks; `OPERATION_WEIGHTS` / `operation_mix()` state the workload."""

from demo.traffic.generator import VoucherTraffic
from demo.traffic.mix import OPERATION_WEIGHTS, describe_operation_mix, operation_mix

__all__ = ["OPERATION_WEIGHTS", "VoucherTraffic", "describe_operation_mix", "operation_mix"]
