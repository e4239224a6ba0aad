"""Where the CLIs take the caller's token from (services/cli/credentials.py), in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.cli import credentials, rollout_cmd
from services.cli.credentials import ApiCredentials, resolve_token


def kubeconfig(tmp_path: Path, user: dict) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "here",
        "contexts": [{"name": "here", "context": {"cluster": "c", "user": "me"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "other", "user": {"token": "not-mine"}}, {"name": "me", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_the_first_source_with_a_token_wins(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    sa = tmp_path / "sa-token"
    sa.write_text("from-sa")
    config = kubeconfig(tmp_path, {"token": "from-kubeconfig"})
    env = {credentials.TOKEN_ENV: "from-env"}
    everything = dict(env=env, service_account_file=str(sa), kubeconfig=config)

    found = resolve_token(token="from-flag", token_file=str(token_file), **everything)
    assert found == credentials.Token("from-flag", "--token")
    found = resolve_token(token_file=str(token_file), **everything)
    assert found == credentials.Token("from-file", f"--token-file {token_file}")
    assert resolve_token(**everything) == credentials.Token("from-env", "$KRUISE_MESH_TOKEN")
    found = resolve_token(env={}, service_account_file=str(sa), kubeconfig=config)
    assert found is not None and found.value == "from-sa" and "ServiceAccount" in found.source
    found = resolve_token(env={}, service_account_file=str(tmp_path / "none"), kubeconfig=config)
    assert found == credentials.Token("from-kubeconfig", f"kubeconfig {config} (user me)")
    assert resolve_token(env={}, service_account_file=str(tmp_path / "none")) is None


def test_a_kubeconfig_token_file_and_users_without_tokens(tmp_path: Path):
    token_file = tmp_path / "t"
    token_file.write_text("abc")
    found = credentials.kubeconfig_token(kubeconfig(tmp_path, {"tokenFile": str(token_file)}))
    assert found is not None and found.value == "abc"
    assert credentials.kubeconfig_token(kubeconfig(tmp_path, {"client-certificate": "x"})) is None
    assert credentials.kubeconfig_token(str(tmp_path / "missing")) is None


def test_plaintext_sends_no_token_and_refusals_say_which_token(tmp_path: Path):
    env = {credentials.TOKEN_ENV: "t", credentials.CA_ENV: "/ca.crt"}
    plain = ApiCredentials.resolve(plaintext=True, env=env)
    assert plain.token is None and "no token was sent" in plain.describe()
    creds = ApiCredentials.resolve(env=env)
    assert creds.ca_file == "/ca.crt"
    assert creds.describe() == "the token from $KRUISE_MESH_TOKEN was used"
    none = ApiCredentials.resolve(env={}, kubeconfig=str(tmp_path / "missing"))
    if none.token is None:  # (this machine may have a ServiceAccount token of its own)
        assert "no token found" in none.describe()


@pytest.mark.parametrize("command", ["rollout", "drain-plan"])
def test_the_clis_say_where_tokens_come_from(command, capsys):
    from services.cli.__main__ import main

    with pytest.raises(SystemExit):
        main([command, "status", "--help"] if command == "rollout" else [command, "--help"])
    out = capsys.readouterr().out
    for flag in ("--token", "--token-file", "--ca-file", "--plaintext", "KRUISE_MESH_TOKEN"):
        assert flag in out
    assert "ServiceAccount" in " ".join(out.split())


def test_the_rollout_cli_reads_the_credential_flags():
    args = rollout_cmd.parse_args(["status", "a/b", "--token", "x", "--ca-file", "ca.crt"])
    creds = credentials.from_args(args, kubeconfig=None)
    assert (creds.token, creds.ca_file, creds.plaintext) == (
        credentials.Token("x", "--token"),
        "ca.crt",
        False,
    )
    plain = credentials.from_args(
        rollout_cmd.parse_args(["status", "a/b", "--plaintext"]), kubeconfig=None
    )
    assert plain.plaintext and plain.token is None


def test_the_projected_rollout_api_token_comes_before_the_api_servers(tmp_path: Path):
    projected = tmp_path / "rollout-api-token"
    projected.write_text("for-the-rollout-api\n")
    sa = tmp_path / "sa-token"
    sa.write_text("for-the-api-server")
    files = dict(service_account_file=str(sa), rollout_api_file=str(projected))
    found = resolve_token(env={}, **files)
    assert found is not None and found.value == "for-the-rollout-api"
    assert "projected rollout-API token" in found.source
    # what the caller names still wins
    assert resolve_token(env={credentials.TOKEN_ENV: "e"}, **files) == credentials.Token(
        "e", "$KRUISE_MESH_TOKEN"
    )
    projected.unlink()
    found = resolve_token(env={}, **files)
    assert found is not None and found.value == "for-the-api-server"


def test_the_cli_and_the_gateway_name_the_same_audience():
    from services.gateway import callers

    assert credentials.ROLLOUT_API_AUDIENCE == callers.ROLLOUT_API_AUDIENCE
    assert callers.Audiences().names == (credentials.ROLLOUT_API_AUDIENCE,)
    assert credentials.ROLLOUT_API_AUDIENCE in credentials.TOKEN_HELP
