"""Build one spec from an empty data directory and print the digest of everything made.

Run as ``python -m tests.support.reproduce DATA_DIR CHANNEL... -- DEP...``: the
reproducibility test runs it twice, under different ``HOME``, ``TMPDIR``, data
directory and clock, and compares what it prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from condastore_core.artifacts import ArtifactKind
from condastore_core.builds import LocalBuilder
from condastore_core.image import manifest as oci
from condastore_core.image.builder import ImageBuilder
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore, put
from tests.core.test_image import MemoryLayerCache


def main(argv: list[str]) -> dict[str, object]:
    data_dir = Path(argv[0])
    split = argv.index("--")
    channels, deps = argv[1:split], argv[split + 1 :]
    spec = EnvironmentSpec.from_dict({"name": "same", "channels": channels, "dependencies": deps})
    solver = Solver(cache_dir=data_dir / "repodata")
    store = LocalBlobStore(data_dir / "blobs")
    build = LocalBuilder(data_dir, store, solver).build(spec, platforms=["linux-64"])
    artifacts = {
        kind.value: str(a.digest)
        for kind, a in build.artifacts.items()
        if kind != ArtifactKind.LOG  # the log tells of this run: paths and timings
    }
    lock = solver.solve(spec, ["linux-64"])
    builder = ImageBuilder(
        store,
        MemoryLayerCache(),
        data_dir / "pkgs",
        data_dir / "scratch",
        max_layers=4,  # some layers merge
        client=solver.client,
    )
    image = builder.build(lock, "linux-64")
    index = oci.image_index(
        [
            oci.Descriptor(
                oci.MANIFEST,
                str(image.manifest_digest),
                len(image.manifest),
                platform=oci.OCI_PLATFORMS["linux-64"],
            )
        ]
    )
    return {
        "artifacts": artifacts,
        "layers": [r.digest for r in image.layers],
        "config": str(image.config_digest),
        "manifest": str(image.manifest_digest),
        "index": str(put(store, index).digest),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), sort_keys=True))
