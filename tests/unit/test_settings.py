"""Settings (`vitrine.common.settings`): flags beat environment variables beat defaults; bad values
give an error that names the setting and the value."""

from __future__ import annotations

import dataclasses

import pytest

from vitrine.common.settings import ServerSettings, describe, env_name, load_settings, setting
from vitrine.embedder.settings import ENV_PREFIX, EmbedderSettings

PREFIX = "VITRINE_TEST_"


@dataclasses.dataclass(frozen=True)
class DemoSettings(ServerSettings):
    batch: int = setting(8, "An int.")
    ratio: float = setting(0.5, "A float.")
    name: str = setting("default", "A string.")
    verbose: bool = setting(False, "A bool.")
    limit: int | None = setting(None, "An optional int.")


def load(argv: list[str] | None = None, **env: str) -> DemoSettings:
    return load_settings(DemoSettings, PREFIX, argv or [], environ=env)


def test_defaults() -> None:
    settings = load()
    assert (settings.batch, settings.ratio, settings.name, settings.verbose, settings.limit) == (
        8,
        0.5,
        "default",
        False,
        None,
    )
    assert settings.port == 50051 and settings.host == "127.0.0.1"  # inherited server settings


def test_environment_beats_defaults() -> None:
    settings = load(
        VITRINE_TEST_BATCH="16",
        VITRINE_TEST_RATIO="0.25",
        VITRINE_TEST_NAME="from-env",
        VITRINE_TEST_VERBOSE="yes",
        VITRINE_TEST_LIMIT="3",
        VITRINE_TEST_PORT="6000",
    )
    assert (settings.batch, settings.ratio, settings.name, settings.verbose, settings.limit) == (
        16,
        0.25,
        "from-env",
        True,
        3,
    )
    assert settings.port == 6000


def test_flags_beat_environment() -> None:
    settings = load(
        ["--batch", "32", "--name", "from-flag", "--verbose", "false", "--max-message-mb", "4"],
        VITRINE_TEST_BATCH="16",
        VITRINE_TEST_NAME="from-env",
        VITRINE_TEST_VERBOSE="true",
        VITRINE_TEST_RATIO="0.25",
    )
    assert settings.batch == 32 and settings.name == "from-flag" and settings.verbose is False
    assert settings.ratio == 0.25  # no flag: the environment still counts
    assert settings.max_message_mb == 4


def test_other_prefixes_are_ignored() -> None:
    assert load(VITRINE_OTHER_BATCH="99", BATCH="99").batch == 8


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("false", False), ("no", False)],
)
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert load(VITRINE_TEST_VERBOSE=raw).verbose is expected


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"VITRINE_TEST_BATCH": "eight"}, ["VITRINE_TEST_BATCH", "expected int", "'eight'"]),
        ({"VITRINE_TEST_BATCH": "8.5"}, ["VITRINE_TEST_BATCH", "expected int", "'8.5'"]),
        ({"VITRINE_TEST_RATIO": "half"}, ["VITRINE_TEST_RATIO", "expected float", "'half'"]),
        ({"VITRINE_TEST_VERBOSE": "maybe"}, ["VITRINE_TEST_VERBOSE", "true or false", "'maybe'"]),
        ({"VITRINE_TEST_LIMIT": "x"}, ["VITRINE_TEST_LIMIT", "expected int", "'x'"]),
    ],
)
def test_bad_environment_values_name_the_variable(env: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        load(**env)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--batch", "lots"], ["--batch", "expected int", "'lots'"]),
        (["--verbose", "sometimes"], ["--verbose", "true or false", "'sometimes'"]),
    ],
)
def test_bad_flag_values_name_the_flag(argv: list[str], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        load(argv)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_a_bad_environment_value_fails_even_when_a_flag_overrides_it() -> None:
    # Every configured value is checked: a typo in the environment never goes unnoticed.
    with pytest.raises(ValueError, match="VITRINE_TEST_BATCH"):
        load(["--batch", "4"], VITRINE_TEST_BATCH="four")


def test_unknown_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load(["--no-such-setting", "1"])
    assert "--no-such-setting" in capsys.readouterr().err


def test_help_documents_every_setting_with_its_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(EmbedderSettings, ENV_PREFIX, ["--help"], environ={})
    text = capsys.readouterr().out
    for field in dataclasses.fields(EmbedderSettings):
        assert "--" + field.name.replace("_", "-") in text
        assert env_name(ENV_PREFIX, field.name) in text


def test_describe_lists_variables_defaults_and_help() -> None:
    rows = {variable: (default, text) for variable, default, text in describe(EmbedderSettings, ENV_PREFIX)}
    assert rows["VITRINE_EMBEDDER_MAX_BATCH_SIZE"][0] == "0"
    assert all(text for _, text in rows.values()), "every setting needs a help text"


def test_embedder_settings_from_environment() -> None:
    settings = load_settings(
        EmbedderSettings,
        ENV_PREFIX,
        [],
        environ={"VITRINE_EMBEDDER_MODELS": " minilm , clip,, ", "VITRINE_EMBEDDER_MAX_WAIT_MS": "2.5"},
    )
    assert settings.model_names == ["minilm", "clip"]
    assert settings.max_wait_ms == 2.5
    assert isinstance(settings.max_batch_size, int) and settings.max_batch_size == 0  # each model's own


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        load().batch = 3  # type: ignore[misc]
