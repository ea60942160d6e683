"""Settings: flags over CONDASTORE_* variables over the config file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from condastore_core.errors import ConfigError
from condastore_core.settings import Settings, default_data_dir, load_settings


def test_defaults_follow_platform_conventions(tmp_path):
    s = load_settings(environ={"XDG_DATA_HOME": str(tmp_path)}, config_file=None)
    assert s.data_dir == default_data_dir()
    assert s.resolved_database_url.endswith("condastore.db")
    assert s.resolved_store_url == str(s.data_dir / "blobs")


def test_precedence_flags_env_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('channels = ["from-file"]\ntarball = false\nstore_url = "/file/store"\n')
    env = {"CONDASTORE_CHANNELS": "env-a, env-b", "CONDASTORE_STORE_URL": "/env/store"}
    s = load_settings({"store_url": "/flag/store"}, environ=env, config_file=cfg)
    assert s.store_url == "/flag/store"  # flag wins
    assert s.channels == ("env-a", "env-b")  # env beats file
    assert s.tarball is False  # file beats default
    assert load_settings(environ={}, config_file=cfg).channels == ("from-file",)


def test_config_file_in_data_dir_is_found(tmp_path):
    (tmp_path / "condastore.toml").write_text('virtual_packages = {__cuda = "12.2"}\n')
    s = load_settings({"data_dir": tmp_path}, environ={})
    assert s.virtual_package_overrides() == {"__cuda": "12.2"}


def test_env_virtual_packages_and_removal():
    s = load_settings(environ={"CONDASTORE_VIRTUAL_PACKAGES": "__cuda=12.2,__glibc="})
    assert s.virtual_package_overrides() == {"__cuda": "12.2", "__glibc": None}


def test_image_settings_from_the_environment():
    s = load_settings(
        environ={
            "CONDASTORE_IMAGE_NAMESPACE_BASES": "ml=/srv/bases/cuda, web=debian:bookworm-slim",
            "CONDASTORE_IMAGE_WAIT_SECONDS": "2.5",
            "CONDASTORE_IMAGE_LAYER_JOBS": "8",
            "CONDASTORE_IMAGE_COMPRESSION": "zstd",
        }
    )
    assert s.image_namespace_bases == {"ml": "/srv/bases/cuda", "web": "debian:bookworm-slim"}
    assert (s.image_wait_seconds, s.image_layer_jobs, s.image_compression) == (2.5, 8, "zstd")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"environ": {"CONDASTORE_TARBALL": "maybe"}}, "invalid value for setting 'tarball'"),
        ({"environ": {}, "config_file": Path("/nonexistent/c.toml")}, "does not exist"),
        ({"environ": {"CONDASTORE_IMAGE_COMPRESSION": "xz"}}, "expected gzip or zstd"),
        ({"environ": {"CONDASTORE_IMAGE_LAYER_JOBS": "four"}}, "'image_layer_jobs'"),
    ],
)
def test_bad_settings_are_clear(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(**kwargs)


def test_unknown_key_in_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("chanels = []\n")
    with pytest.raises(ConfigError, match="unknown setting 'chanels'"):
        load_settings(environ={}, config_file=cfg)


def test_settings_is_immutable():
    with pytest.raises(AttributeError):
        Settings().tarball = False  # type: ignore[misc]


def test_images_stand_on_a_base_with_a_loader_and_libc_by_default():
    """conda-forge's binaries need the system's glibc: an empty base runs none of them."""
    from condastore_core.oci_client import parse_reference, registry_host

    s = load_settings(environ={})
    assert s.image_base not in ("", "scratch")
    host, repository, tag = parse_reference(s.image_base)
    assert (registry_host(host), repository, tag) == (
        "registry-1.docker.io",
        "library/debian",
        "bookworm-slim",
    )
    assert parse_reference("debian:bookworm-slim") == ("docker.io", "debian", "bookworm-slim")
    assert parse_reference("localhost:5000/base") == ("localhost:5000", "base", "latest")


def test_registry_credentials_are_read_but_never_shown(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[image_registry_credentials]\n"registry.example.com" = "robot:hunter2"\n')
    s = load_settings(
        environ={"CONDASTORE_IMAGE_REGISTRY_CREDENTIALS": "ghcr.io=me:tok3n"}, config_file=cfg
    )
    assert s.image_registry_credentials == {"ghcr.io": "me:tok3n"}  # env beats file
    assert load_settings(environ={}, config_file=cfg).image_registry_credentials == {
        "registry.example.com": "robot:hunter2"
    }
    assert "tok3n" not in repr(s) and "hunter2" not in repr(
        load_settings(environ={}, config_file=cfg)
    )


def test_a_misspelt_variable_is_refused_like_a_misspelt_key_in_the_file(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"CONDASTORE_TARBAL": "false", "CONDASTORE_DATA_DIR": "/x"})
    assert "CONDASTORE_TARBAL" in refused.value.message
    assert "did you mean CONDASTORE_TARBALL" in refused.value.message
    with pytest.raises(ConfigError, match=r"'tarbal'.*did you mean 'tarball'"):
        (tmp_path / "c.toml").write_text("tarbal = false\n")
        load_settings(config_file=tmp_path / "c.toml", environ={})


def test_the_clients_and_the_test_suites_variables_are_not_settings():
    environ = {
        "CONDASTORE_URL": "http://example.org",
        "CONDASTORE_TOKEN": "t",
        "CONDASTORE_CREDENTIALS": "/nowhere",
        "CONDASTORE_TEST_REDIS_URL": "redis://127.0.0.1/5",
        "CONDASTORE_TARBALL": "false",
    }
    assert load_settings(environ=environ).tarball is False


def test_pip_index_settings_from_the_environment_never_show_credentials():
    settings = load_settings(
        environ={
            "CONDASTORE_PIP_INDEX_URL": "https://pypi.example.org/simple",
            "CONDASTORE_PIP_EXTRA_INDEX_URLS": "https://a.example.org/simple, https://b.example.org/simple",
            "CONDASTORE_PIP_CREDENTIALS": "pypi.example.org=alice:s3cret",
        },
        config_file=None,
    )
    assert settings.pip_index_url == "https://pypi.example.org/simple"
    assert settings.pip_extra_index_urls == (
        "https://a.example.org/simple",
        "https://b.example.org/simple",
    )
    assert settings.pip_credentials == {"pypi.example.org": "alice:s3cret"}
    assert "s3cret" not in repr(settings)
