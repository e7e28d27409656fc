from checkout.signatures import hmac_sha256_hex, verify_sha256_header

VECTOR = "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"


def test_hmac_matches_the_published_vector():
    assert hmac_sha256_hex("secret", b"test") == VECTOR


def test_header_check_accepts_only_the_right_signature():
    assert verify_sha256_header(secret="secret", body=b"test", header=f"sha256={VECTOR}")
    assert not verify_sha256_header(secret="secret", body=b"test2", header=f"sha256={VECTOR}")
    assert not verify_sha256_header(secret="other", body=b"test", header=f"sha256={VECTOR}")
    assert not verify_sha256_header(secret="secret", body=b"test", header=VECTOR)
    assert not verify_sha256_header(secret="secret", body=b"test", header=None)


def test_a_forged_header_with_non_ascii_text_is_refused_not_an_error():
    assert not verify_sha256_header(secret="secret", body=b"test", header="sha256=çà" + "0" * 62)
