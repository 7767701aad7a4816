"""Domains and job ids are checked before anything is sent."""

from __future__ import annotations

import pytest

from kepler_async import InvalidDomain, InvalidJobId, normalize_domain
from kepler_async._engine._kit import path_segment
from kepler_async._kepler._domains import validate_job_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stripe.com", "stripe.com"),
        ("Stripe.COM", "stripe.com"),
        ("  stripe.com  ", "stripe.com"),
        ("stripe.com\n", "stripe.com"),
        ("www.stripe.com", "stripe.com"),
        ("https://stripe.com", "stripe.com"),
        ("https://www.stripe.com/pricing?x=1#top", "stripe.com"),
        ("HTTP://Stripe.com/", "stripe.com"),
        ("stripe.com/", "stripe.com"),
        ("stripe.com.", "stripe.com"),
        ("api.eu.stripe.com", "api.eu.stripe.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("acme.test", "acme.test"),
        ("a-b.co.uk", "a-b.co.uk"),
    ],
)
def test_normalises(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("www.", id="only-www"),
        pytest.param("localhost", id="no-tld"),
        pytest.param("stripe..com", id="double-dot"),
        pytest.param("../etc/passwd", id="traversal"),
        pytest.param("stripe.com/../admin", id="path"),
        pytest.param("a/b.com", id="slash"),
        pytest.param("stripe com", id="space"),
        pytest.param("stri\npe.com", id="newline"),
        pytest.param("stri\x00pe.com", id="nul"),
        pytest.param("stripe.com\tx", id="tab"),
        pytest.param("user@stripe.com", id="at"),
        pytest.param("https://user:pw@stripe.com", id="userinfo"),
        pytest.param("https://stripe.com:8443", id="port"),
        pytest.param("stripe.com?x=1", id="query"),
        pytest.param("-stripe.com", id="leading-hyphen"),
        pytest.param("stripe_.com", id="underscore"),
        pytest.param("a" * 64 + ".com", id="label-too-long"),
        pytest.param(".".join(["abcdefghi"] * 30) + ".com", id="too-long"),
        pytest.param("%2e%2e.com", id="percent"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param(b"stripe.com", id="bytes"),
    ],
)
def test_rejects(raw: object) -> None:
    with pytest.raises(InvalidDomain) as info:
        normalize_domain(raw)
    assert isinstance(info.value, ValueError)
    assert len(info.value.value) <= 100


def test_error_says_what_was_wrong() -> None:
    with pytest.raises(InvalidDomain, match=r"invalid domain 'a/b\.com'.*'/'"):
        normalize_domain("a/b.com")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9F0C2D83-1B6E-4D5C-9A3F-2C1D0E9B8A7F", "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"),
        (" 9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f ", "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"),
    ],
)
def test_job_ids_are_canonical_uuids(raw: str, expected: str) -> None:
    assert validate_job_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "cached-fresh",
        "../../v1/usage",
        "9f0c2d83",
        "9f0c2d831b6e4d5c9a3f2c1d0e9b8a7f",
        "{9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f}",
        "urn:uuid:9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f",
        "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f/../x",
        None,
    ],
)
def test_job_ids_that_are_not_uuids_are_rejected(raw: object) -> None:
    with pytest.raises(InvalidJobId):
        validate_job_id(raw)


def test_path_segments_escape_everything_unsafe() -> None:
    assert path_segment("a/b?c#d%e") == "a%2Fb%3Fc%23d%25e"
    assert path_segment("stripe.com") == "stripe.com"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("straße.de", "xn--strae-oqa.de", id="uts46-keeps-sharp-s"),
        pytest.param("bücher.de", "xn--bcher-kva.de", id="umlaut"),
        pytest.param("\uff33\uff34\uff32\uff29\uff30\uff25.com", "stripe.com", id="fullwidth"),
    ],
)
def test_internationalised_names_follow_uts46(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param("127.0.0.2", "IP address", id="loopback"),
        pytest.param("169.254.169.254", "IP address", id="metadata"),
        pytest.param("0x7f.1", "IP address", id="hex-parts"),
        pytest.param("192.168.1.1", "IP address", id="private"),
        pytest.param("2130706433", "IP address", id="one-number"),
        pytest.param("0177.0.0.1", "IP address", id="octal"),
        pytest.param("http://[::1]/", "IP address", id="ipv6-url"),
        pytest.param("::1", "IP address", id="ipv6"),
        pytest.param(".com", "empty label", id="leading-dot"),
        pytest.param("a..b.com", "empty label", id="empty-label"),
    ],
)
def test_addresses_and_empty_labels_are_refused_in_plain_words(raw: str, why: str) -> None:
    with pytest.raises(InvalidDomain, match=why) as info:
        normalize_domain(raw)
    assert "codec" not in str(info.value)
