"""The API's guards in isolation (issue #11): client addresses behind proxies, the password
policy, the body-limit middleware on a bare ASGI app, safe 422 entries, identity fields
left out for the hotline desk, control characters in names."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError

from hub.api.body_limit import BodyLimit, larger_body
from hub.api.client_address import forwarded_client
from hub.api.errors import REDACTED, safe_errors
from hub.api.fields import Name, Notes, control_character
from hub.auth.password_policy import password_problem
from hub.config import BodyLimits
from hub.domain.access import Principal, Role, without_identities

PROXY = [ip_network("10.0.0.5/32")]


# -- client addresses ----------------------------------------------------------------------


def test_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy() -> None:
    assert forwarded_client("127.0.0.1", "198.51.100.7", []) == "127.0.0.1"
    assert forwarded_client("10.0.0.9", "198.51.100.7", PROXY) == "10.0.0.9"
    assert forwarded_client("10.0.0.5", None, PROXY) == "10.0.0.5"


def test_behind_a_proxy_the_right_most_untrusted_address_is_the_client() -> None:
    assert forwarded_client("10.0.0.5", "198.51.100.7", PROXY) == "198.51.100.7"
    # the client wrote the left part itself; the proxy appended what it saw
    assert forwarded_client("10.0.0.5", "1.2.3.4, 198.51.100.7", PROXY) == "198.51.100.7"
    chain = [ip_network("10.0.0.0/24")]
    assert forwarded_client("10.0.0.5", "198.51.100.7, 10.0.0.6", chain) == "198.51.100.7"
    assert forwarded_client("10.0.0.5", "garbage", PROXY) == "10.0.0.5"
    assert forwarded_client("10.0.0.5", "2001:db8::1", PROXY) == "2001:db8::1"


# -- passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["password123", "1234567890", "qwertyuiop", "aaaaaaaaaaaa", "P@ssw0rd2024", "iloveyou12"],
)
def test_common_and_trivial_passwords_are_refused_in_both_languages(password: str) -> None:
    problem = password_problem(password, "wang", min_length=10, max_length=1024)
    assert problem is not None
    assert "too easy to guess" in str(problem) and "容易被猜中" in str(problem)
    assert password not in str(problem)


def test_a_phrase_of_unrelated_words_passes_and_the_username_does_not() -> None:
    assert password_problem("correct horse battery", "wang", min_length=10, max_length=1024) is None
    assert password_problem("wangli2024", "wangli2024", min_length=10, max_length=1024)
    assert password_problem("short", "wang", min_length=10, max_length=1024)
    assert password_problem("x" * 2000, "wang", min_length=10, max_length=1024)


def test_a_long_password_is_judged_not_a_server_error() -> None:
    """zxcvbn raises beyond 72 characters; the OpenAPI fuzz found the 500 this made."""
    long_phrase = "correct horse battery staple " * 4  # 116 characters
    assert password_problem(long_phrase, "wang", min_length=10, max_length=1024) is None
    assert password_problem("a" * 200, "wang", min_length=10, max_length=1024) is not None


# -- the body limit -----------------------------------------------------------------------


class Body(BaseModel):
    text: str


def guarded_app(*, signed_in: bool) -> FastAPI:
    app = FastAPI()

    @app.post("/small")
    async def small(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    @app.post("/import", openapi_extra=larger_body("import"))
    async def big(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    async def check(_scope: Any) -> bool:
        return signed_in

    limits = BodyLimits(default_bytes=4096, import_bytes=64 * 1024)
    app.add_middleware(BodyLimit, limits=limits, check_credentials=check)
    return app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


async def chunks(count: int, size: int = 1024) -> Any:
    for _ in range(count):
        yield b" " * size


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    async with client_of(guarded_app(signed_in=True)) as client:
        fine = await client.post("/small", json={"text": "x" * 100})
        assert fine.status_code == 200 and fine.json() == {"length": 100}
        refused = await client.post("/small", json={"text": "x" * 5000})
        assert refused.status_code == 413
        assert refused.json()["detail"].startswith("request body larger than 4096 bytes / ")


async def test_a_chunked_body_is_counted_and_refused_when_it_passes_the_limit() -> None:
    async with client_of(guarded_app(signed_in=True)) as client:
        refused = await client.post(
            "/small", content=chunks(8), headers={"content-type": "application/json"}
        )
        assert refused.status_code == 413
        accepted = await client.post("/import", content=chunks(32))  # 32 KiB < 64 KiB
        assert accepted.status_code == 200 and accepted.json() == {"length": 32 * 1024}
        too_big = await client.post("/import", content=chunks(80))
        assert too_big.status_code == 413 and "65536" in too_big.json()["detail"]


async def test_no_body_is_read_from_a_caller_without_credentials() -> None:
    async with client_of(guarded_app(signed_in=False)) as client:
        refused = await client.post("/small", json={"text": "x"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


# -- safe 422 entries ----------------------------------------------------------------------


def test_safe_errors_redact_secrets_and_cut_long_input() -> None:
    errors = [
        {
            "type": "missing",
            "loc": ("body", "role"),
            "msg": "Field required",
            "input": {"username": "newbie", "password": "Tr0ub4dor&3", "nested": {"token": "t"}},
        },
        {"type": "string_too_long", "loc": ("body", "password"), "msg": "x", "input": "secret"},
        {"type": "string_too_long", "loc": ("body", "name"), "msg": "x", "input": "名" * 5000},
        {"type": "list", "loc": ("body", "x" * 500), "msg": "x", "input": list(range(1000))},
    ]
    safe = safe_errors(errors)
    assert safe[0]["input"]["password"] == REDACTED
    assert safe[0]["input"]["nested"]["token"] == REDACTED
    assert safe[1]["input"] == REDACTED
    assert len(safe[2]["input"]) < 200
    assert len(safe[3]["loc"][1]) < 100 and len(safe[3]["input"]) == 11
    assert "Tr0ub4dor" not in str(safe) and "secret" not in str(safe)


# -- identities and control characters ----------------------------------------------------


def test_identity_fields_are_left_out_at_any_depth() -> None:
    data = {
        "person_id": "P1",
        "card_id": "C1",
        "similarity": 0.9,
        "last": {"person_name": "张伟", "phone": "13800000000", "seconds": 3},
        "faces": [{"face_id": "F1", "score": 1}],
    }
    assert without_identities(data) == {
        "similarity": 0.9,
        "last": {"seconds": 3},
        "faces": [{"score": 1}],
    }
    assert not Principal(kind="user", name="d", role=Role.HOTLINE).sees_identities()
    assert Principal(kind="user", name="o", role=Role.OPERATOR).sees_identities()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("张\u202e伟", "U+202E"),
        ("\u2066李明\u2069", "U+2066"),
        ("王\u200b丽", "U+200B"),
        ("赵\x00敏", "U+0000"),
        ("刘\u061c", "U+061C"),
        ("孙\x1b[31m", "U+001B"),
    ],
)
def test_control_and_bidi_characters_are_found(text: str, found: str) -> None:
    assert control_character(text) == found
    assert control_character(text, multi_line=True) == found


def test_ordinary_names_and_multi_line_notes_pass() -> None:
    assert control_character("王丽 Wang-Li O'Neil (二号楼)") is None
    assert control_character("钥匙在门口\n邻居 302\t有备用", multi_line=True) is None
    assert control_character("钥匙\n在门口") == "U+000A"  # one-line text: no line break


def test_the_shared_field_types_refuse_them_with_a_bilingual_message() -> None:
    class Person(BaseModel):
        name: Name
        notes: Notes = ""

    with pytest.raises(ValidationError) as refused:
        Person(name="张\u202e伟")
    message = str(refused.value)
    assert "U+202E" in message and "控制字符" in message
    assert Person(name="张伟", notes="第一行\n第二行").notes == "第一行\n第二行"


def test_both_import_routes_declare_the_larger_class_and_it_holds_their_files() -> None:
    from hub.api.routes.registry_import import BODY_LIMIT
    from hub.app import create_app
    from hub.config import HubConfig

    paths = create_app(HubConfig.model_validate({"api": {"token": "x" * 24}})).openapi()["paths"]
    for path in ("/api/v1/devices/import", "/api/v1/registry/import"):
        assert paths[path]["post"]["x-body-limit"] == "import", path
    assert BodyLimits().import_bytes >= BODY_LIMIT


# On both back ends: asyncpg refuses such an int itself; SQLite's driver overflows.
async def test_an_id_past_64_bits_is_a_422_with_the_write_gate_installed(
    database_url: str,
) -> None:
    """The write gate's error hook must not turn a database error into a 500 (schemathesis
    found it: PUT /api/v1/accounts/<31 digits>/password)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from pydantic import SecretStr

    from hub.app import create_app
    from hub.config import ApiSettings, HubConfig
    from hub.db.engine import create_engine
    from hub.db.write_gate import WriteGate

    engine = create_engine(database_url)
    WriteGate().install(engine)
    config = HubConfig(api=ApiSettings(token=SecretStr("s" * 32)))
    app = create_app(config)
    app.state.runtime = SimpleNamespace(
        config=config, engine=engine, clock=lambda: datetime.now(UTC)
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://hub",
            headers={"Authorization": "Bearer " + "s" * 32},
        ) as client:
            response = await client.post(f"/api/v1/accounts/{2**100}/disable")
        assert response.status_code == 422, response.text
    finally:
        await engine.dispose()
