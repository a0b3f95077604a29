"""What the user sync keeps of a CRM user: the display name only, tidy and bounded."""

from __future__ import annotations

from handlers.enrichment.users import (
    MAX_NAME_CHARS,
    amocrm_names,
    bitrix24_names,
    hubspot_names,
    pipedrive_names,
    user_name,
)


def test_a_name_is_its_text_parts_trimmed_and_bounded() -> None:
    assert user_name(" Олена ", None, "Коваленко\n") == "Олена Коваленко"
    assert user_name("Анна   Марія", "") == "Анна Марія"
    assert user_name(None, "", True, 7) is None
    assert len(user_name("Я" * 500) or "") == MAX_NAME_CHARS


def test_rows_without_an_id_or_a_name_are_left_out() -> None:
    names: dict[str, str] = {}
    bitrix24_names(
        [{"ID": "1", "NAME": "Олена", "LAST_NAME": "Коваленко", "EMAIL": "o@x.ua"},
         {"ID": "2", "NAME": "", "LAST_NAME": ""}, {"NAME": "No Id"}, "junk", {"ID": True}],
        names,
    )  # fmt: skip
    assert names == {"1": "Олена Коваленко"}


def test_each_crm_says_when_there_is_another_page() -> None:
    names: dict[str, str] = {}
    assert amocrm_names({"_embedded": {"users": [{"id": 3, "name": "Іван"}]},
                         "_links": {"next": {"href": "https://x/?page=2"}}}, names)  # fmt: skip
    assert not amocrm_names({"_embedded": {"users": []}, "_links": {}}, names)
    assert not amocrm_names(None, names)  # 204: no users
    assert hubspot_names({"results": [], "paging": {"next": {"after": "100"}}}, names) == "100"
    assert hubspot_names({"results": []}, names) is None
    more = {"more_items_in_collection": True, "next_start": 100}
    assert pipedrive_names({"data": [], "additional_data": {"pagination": more}}, names) == 100
    assert pipedrive_names({"data": None}, names) is None
    assert names == {"3": "Іван"}
