"""The Harbor API emulator itself behaves like Harbor where the provider relies on it.

Integration: each test starts the emulator (an HTTP server thread on 127.0.0.1) and talks to it with `requests`.
"""

import requests


AUTH = ("admin", "Harbor12345")


def _post(emu, path, body, **kw):
    return requests.post(f"{emu.url}/api/v2.0{path}", json=body, auth=AUTH, timeout=5, **kw)


def test_unknown_body_field_is_rejected_with_422_naming_it(emulator):
    answer = _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x", "secret": "s"})
    assert answer.status_code == 422
    assert "'secret' was unexpected" in answer.json()["errors"][0]["message"]
    assert emulator.registries == {}


def test_wrong_field_type_is_rejected(emulator):
    answer = _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x", "insecure": "no"})
    assert answer.status_code == 422 and "insecure" in answer.text


def test_nested_unknown_field_in_policy_filter_is_rejected(emulator):
    _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
    answer = _post(emulator, "/replication/policies",
                   {"name": "p", "dest_registry": {"id": 1}, "filters": [{"type": "name", "value": "a", "x": 1}]})
    assert answer.status_code == 422 and "filters.0" in answer.text


def test_wrong_password_gets_401(emulator):
    answer = requests.get(f"{emulator.url}/api/v2.0/registries", auth=("admin", "wrong"), timeout=5)
    assert answer.status_code == 401 and answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_session_cookie_sent_back_on_a_write_gets_csrf_403(emulator):
    with requests.Session() as session:
        session.auth = AUTH
        session.get(f"{emulator.url}/api/v2.0/registries", timeout=5)
        assert "sid" in session.cookies
        answer = session.post(f"{emulator.url}/api/v2.0/registries",
                              json={"name": "r", "type": "docker-registry", "url": "x"}, timeout=5)
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_registry_url_is_normalized_and_secret_masked(emulator):
    created = _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": " old:5000/ ",
                                              "credential": {"type": "basic", "access_key": "u",
                                                             "access_secret": "pw"}})
    assert created.status_code == 201 and created.headers["Location"] == "/api/v2.0/registries/1"
    got = requests.get(f"{emulator.url}{created.headers['Location']}", auth=AUTH, timeout=5).json()
    assert got["url"] == "http://old:5000"
    assert got["credential"]["access_secret"] == "*****"


def test_duplicate_name_gets_409_and_used_registry_delete_gets_412(emulator):
    body = {"name": "r", "type": "docker-registry", "url": "x"}
    assert _post(emulator, "/registries", body).status_code == 201
    assert _post(emulator, "/registries", body).status_code == 409
    assert _post(emulator, "/replication/policies", {"name": "p", "dest_registry": {"id": 1}}).status_code == 201
    answer = requests.delete(f"{emulator.url}/api/v2.0/registries/1", auth=AUTH, timeout=5)
    assert answer.status_code == 412 and "referenced by replication policies" in answer.text


def test_policy_speed_minus_one_comes_back_as_zero_and_deletion_is_read_from_the_deprecated_field(emulator):
    _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
    _post(emulator, "/replication/policies", {"name": "p", "dest_registry": {"id": 1}, "speed": -1,
                                              "replicate_deletion": True})
    _post(emulator, "/replication/policies", {"name": "q", "dest_registry": {"id": 1}, "deletion": True})
    p = requests.get(f"{emulator.url}/api/v2.0/replication/policies/2", auth=AUTH, timeout=5).json()
    q = requests.get(f"{emulator.url}/api/v2.0/replication/policies/3", auth=AUTH, timeout=5).json()
    assert p["speed"] == 0 and p["dest_namespace_replace_count"] == -1 and p["src_registry"]["id"] == 0
    assert (p["replicate_deletion"], p["deletion"]) == (False, False)  # the flip users of other providers see
    assert (q["replicate_deletion"], q["deletion"]) == (True, True)


def test_pagination_link_and_total_count(emulator):
    _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
    for i in range(25):
        _post(emulator, "/replication/policies", {"name": f"p{i}", "dest_registry": {"id": 1}})
    answer = requests.get(f"{emulator.url}/api/v2.0/replication/policies", params={"page": 2, "page_size": 10},
                          auth=AUTH, timeout=5)
    assert answer.headers["X-Total-Count"] == "25" and len(answer.json()) == 10
    assert 'page=3&page_size=10>; rel="next"' in answer.headers["Link"]
    assert 'page=1&page_size=10>; rel="prev"' in answer.headers["Link"]
    too_big = requests.get(f"{emulator.url}/api/v2.0/replication/policies", params={"page_size": 101},
                           auth=AUTH, timeout=5)
    assert too_big.status_code == 422


def test_injected_status_fault_applies_nothing(emulator):
    emulator.inject("POST", "/registries$", "status", status=503)
    answer = _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
    assert answer.status_code == 503 and emulator.registries == {}


def test_injected_drop_applies_the_write_but_sends_no_answer(emulator):
    emulator.inject("POST", "/registries$", "drop")
    try:
        _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
        raise AssertionError("the emulator answered")
    except requests.ConnectionError:
        pass
    assert [r["name"] for r in emulator.registries.values()] == ["r"]


def test_emulator_answers_are_checked_against_the_swagger_too(emulator):
    _post(emulator, "/registries", {"name": "r", "type": "docker-registry", "url": "x"})
    emulator.registries[1]["not_in_harbor"] = True  # a field real Harbor never sends
    answer = requests.get(f"{emulator.url}/api/v2.0/registries/1", auth=AUTH, timeout=5)
    assert answer.status_code == 500 and "breaks the swagger of getRegistry" in answer.text


def test_project_update_merges_metadata_and_only_delete_removes_a_key(emulator):
    _post(emulator, "/projects", {"project_name": "p", "metadata": {"severity": "high"}})
    (pid,) = emulator.projects
    base = f"{emulator.url}/api/v2.0/projects/{pid}"
    requests.put(base, json={"metadata": {"public": "true"}}, auth=AUTH, timeout=5)
    assert requests.get(base, auth=AUTH, timeout=5).json()["metadata"]["severity"] == "high"
    assert requests.delete(f"{base}/metadatas/severity", auth=AUTH, timeout=5).status_code == 200
    assert requests.get(base, auth=AUTH, timeout=5).json()["metadata"] == {"public": "true"}
    assert requests.delete(f"{base}/metadatas/severity", auth=AUTH, timeout=5).status_code == 404
