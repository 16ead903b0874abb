"""Regenerate the Python stubs for protos/inference.proto: `python -m protos.generate`.

protoc runs with the repository root as include path, so the proto is known as
`protos/inference.proto` and the gRPC stub imports `from protos import inference_pb2`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "protos/inference.proto"
OUTPUTS = ("protos/inference_pb2.py", "protos/inference_pb2.pyi", "protos/inference_pb2_grpc.py")


def run_protoc(out_dir: Path) -> None:
    """Write the stubs under `out_dir` (ROOT rewrites the committed files)."""
    from grpc_tools import protoc  # build-time only: grpcio-tools is a test dependency

    args = ["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", str(ROOT / PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")


def main() -> int:
    run_protoc(ROOT)
    print("wrote " + " ".join(OUTPUTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
