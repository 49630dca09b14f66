"""Records as the gateway delivers into them, on SQLite and PostgreSQL: one
message item plus one item per attachment, clinical documents typed, XDM
packages unpacked with their metadata, and a redelivery adding nothing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from records_bridge import schema
from records_bridge.store import RecordError, RecordStore
from records_bridge.types import Attachment, Delivery, InboxState, ItemType, Provenance, SourceKind
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

CCD = (
    b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><templateId root="2.16.840.1.113883.10.20.22.1.1"/>'
    b'<templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/><title>CCD</title></ClinicalDocument>'
)
DISCHARGE = CCD.replace(b"10.20.22.1.2", b"10.20.22.1.8")
CCR = b'<?xml version="1.0"?><ContinuityOfCareRecord xmlns="urn:astm-org:CCR"/>'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def metadata_xml(uri: str, data: bytes, title: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
 <rim:RegistryObjectList>
  <rim:ExtrinsicObject id="Document01" mimeType="text/xml"
      objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
   <rim:Slot name="hash"><rim:ValueList><rim:Value>{hashlib.sha1(data).hexdigest()}</rim:Value></rim:ValueList></rim:Slot>
   <rim:Slot name="size"><rim:ValueList><rim:Value>{len(data)}</rim:Value></rim:ValueList></rim:Slot>
   <rim:Slot name="URI"><rim:ValueList><rim:Value>{uri}</rim:Value></rim:ValueList></rim:Slot>
   <rim:Slot name="creationTime"><rim:ValueList><rim:Value>20261201120000</rim:Value></rim:ValueList></rim:Slot>
   <rim:Name><rim:LocalizedString value="{title}"/></rim:Name>
   <rim:Classification classificationScheme="urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
       classifiedObject="Document01" nodeRepresentation="34133-9" id="cl01">
    <rim:Name><rim:LocalizedString value="Summarization of episode note"/></rim:Name>
   </rim:Classification>
   <rim:ExternalIdentifier identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
       value="12345^^^&amp;1.2.3&amp;ISO" id="ei01" registryObject="Document01"/>
  </rim:ExtrinsicObject>
 </rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>
""".encode()


def xdm_zip(extra: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("INDEX.HTM", b"<html>index</html>")
        z.writestr("README.TXT", b"readme")
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata_xml("DOC0001.XML", CCD, "Visit summary"))
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", CCD)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def delivery(message_id: str | None = "<m1@a.test>", attachments: tuple[Attachment, ...] = (),
             sender: str = "alice@a.test") -> Delivery:
    return Delivery(
        provenance=Provenance(
            sender=sender,
            signer_sha256="ab" * 32,
            signer_subject="CN=alice@a.test",
            trust_decision="trusted: chains to A Root (incoming anchors of b.test)",
            message_id=message_id,
        ),
        recipients=("patient@b.test",),
        subject="Results",
        date="Wed, 02 Dec 2026 09:00:00 +0000",
        received_at=AT,
        content=b"From: alice@a.test\r\nTo: patient@b.test\r\nSubject: Results\r\n\r\nSee attached.\r\n",
        body_text="See attached.",
        attachments=attachments,
    )


@pytest.fixture
async def records(store):
    return RecordStore(store)


async def test_a_message_becomes_one_item_and_each_attachment_a_typed_item(records):
    record = await records.create_record("Pat Patient", ("Patient@B.test",), at=AT)
    assert await records.record_for_address("patient@b.test") == record.id
    sent = delivery(
        attachments=(
            Attachment("text/xml", "ccd.xml", CCD),
            Attachment("application/pdf", "letter.pdf", PDF),
            Attachment("application/xml", "ccr.xml", CCR),
            Attachment("application/octet-stream", "discharge.xml", DISCHARGE),
        )
    )
    done = await records.deliver(record.id, sent)
    assert not done.duplicate and len(done.items) == 5
    items = await records.items(record.id)
    assert [i.type for i in items] == [ItemType.MESSAGE, ItemType.CCD, ItemType.FILE, ItemType.CCR, ItemType.DISCHARGE_SUMMARY]
    message, ccd = items[0], items[1]
    assert all(i.inbox_state is InboxState.UNREVIEWED and i.source_kind is SourceKind.DIRECT for i in items)
    assert all(i.sender == "alice@a.test" and i.message_id == "<m1@a.test>" for i in items)
    assert all(i.parent_id == message.id for i in items[1:])
    assert message.data["subject"] == "Results" and message.data["body_text"] == "See attached."
    assert await records.blob(message.id) == sent.content
    assert await records.blob(ccd.id) == CCD  # byte-identical
    assert ccd.sha256 == hashlib.sha256(CCD).hexdigest() and ccd.size == len(CCD) and ccd.filename == "ccd.xml"
    info = await records.record(record.id)
    assert info is not None and info.size_bytes == len(sent.content) + len(CCD) + len(PDF) + len(CCR) + len(DISCHARGE)


@pytest.mark.parametrize("message_id", ["<same@a.test>", None], ids=["message-id", "content-digest"])
async def test_a_redelivery_adds_nothing(records, message_id):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    sent = delivery(message_id, (Attachment("text/xml", "ccd.xml", CCD),))
    first = await records.deliver(record.id, sent)
    again = await records.deliver(record.id, sent)
    assert again.duplicate and again.items == () and again.message_item == first.message_item
    assert await records.count_items(record.id) == 2


@pytest.mark.parametrize(("sender", "again"), [("alice@a.test", True), ("ALICE@a.test", True), ("bob@a.test", False),
                                              ("carol@c.test", False)],
                         ids=["same-sender", "same-sender-other-case", "same-domain", "other-domain"])
async def test_a_message_id_recognises_a_redelivery_only_from_the_sender_that_sent_it(records, sender, again):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    await records.deliver(record.id, delivery("<12345@localhost>"))
    second = await records.deliver(record.id, delivery("<12345@localhost>", sender=sender))
    assert second.duplicate is again
    assert await records.count_items(record.id) == (1 if again else 2)


@pytest.mark.parametrize("length", [255, 256, 2000])
async def test_a_message_id_of_any_length_recognises_a_redelivery(records, length):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    mid = "<" + "x" * (length - 9) + "@a.test>"
    first = await records.deliver(record.id, delivery(mid))
    assert (await records.deliver(record.id, delivery(mid))).duplicate
    assert not (await records.deliver(record.id, delivery(mid, sender="bob@a.test"))).duplicate
    assert not first.duplicate


async def test_concurrent_deliveries_of_one_message_store_it_once(records):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    sent = delivery("<race@a.test>", (Attachment("text/xml", "ccd.xml", CCD),))
    results = await asyncio.gather(*(records.deliver(record.id, sent) for _ in range(4)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.message_item for r in results}) == 1
    assert await records.count_items(record.id) == 2


async def test_the_same_message_to_two_records_lands_in_each(records):
    one = await records.create_record("One", ("one@b.test",), at=AT)
    two = await records.create_record("Two", ("two@b.test",), at=AT)
    sent = delivery()
    assert not (await records.deliver(one.id, sent)).duplicate
    assert not (await records.deliver(two.id, sent)).duplicate


async def test_an_xdm_package_is_unpacked_into_its_documents_with_metadata(records):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    package = xdm_zip()
    await records.deliver(record.id, delivery(attachments=(Attachment("application/zip", "package.zip", package),)))
    message, zipped, document = await records.items(record.id)
    assert zipped.type is ItemType.FILE and zipped.data["xdm"] == {"subsets": ["SUBSET01"], "documents": 1}
    assert await records.blob(zipped.id) == package
    assert b"SubmitObjectsRequest" in (await records.blob(zipped.id, "metadata:SUBSET01") or b"")
    assert document.type is ItemType.CCD and document.parent_id == message.id
    assert await records.blob(document.id) == CCD
    xdm = document.data["xdm"]
    assert xdm["title"] == "Visit summary" and xdm["classCode"] == "Summarization of episode note"
    assert xdm["patientId"] == "12345^^^&1.2.3&ISO" and xdm["hash_matches"] is True


async def test_a_damaged_package_is_kept_as_a_file_with_the_reason(records):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    damaged = xdm_zip()[:-30]  # the central directory's end is gone
    await records.deliver(record.id, delivery(attachments=(Attachment("application/zip", "p.zip", damaged),)))
    _message, kept = await records.items(record.id)
    assert kept.type is ItemType.FILE and "zip cannot be read" in kept.data["xdm_error"]
    assert await records.blob(kept.id) == damaged


async def test_an_address_belongs_to_one_record(records):
    await records.create_record("One", ("p@b.test",), at=AT)
    with pytest.raises(RecordError, match=r"p@b\.test"):
        await records.create_record("Two", ("P@b.test",), at=AT)
    assert [r.display_name for r in await records.records()] == ["One"]


async def test_inbox_state_moves_when_the_patient_reviews(records):
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    done = await records.deliver(record.id, delivery())
    await records.set_inbox_state(done.message_item, InboxState.ACCEPTED)
    (item,) = await records.items(record.id)
    assert item.inbox_state is InboxState.ACCEPTED
    with pytest.raises(RecordError):
        await records.set_inbox_state("no-such-item", InboxState.DISMISSED)


async def test_a_package_whose_subsets_differ_only_past_the_name_limit_keeps_each_metadata(records):
    """Blob names are at most 64 characters; two long subset names that share their first 55
    were one name, and the record's key refused the second blob at every attempt."""
    record = await records.create_record("Pat", ("p@b.test",), at=AT)
    long = "SUBSET_" + "X" * 60
    package = xdm_zip({f"IHE_XDM/{long}1/METADATA.XML": metadata_xml("D.XML", CCD, "One"),
                       f"IHE_XDM/{long}1/D.XML": CCD,
                       f"IHE_XDM/{long}2/METADATA.XML": metadata_xml("D.XML", CCD, "Two"),
                       f"IHE_XDM/{long}2/D.XML": CCD})
    done = await records.deliver(record.id, delivery(attachments=(Attachment("application/zip", "p.zip", package),)))
    assert not done.duplicate
    zipped = (await records.items(record.id))[1]
    assert sorted(zipped.data["xdm"]["subsets"]) == sorted(["SUBSET01", f"{long}1", f"{long}2"])
    names = await records.store.read(lambda conn: sorted(
        r.name for r in conn.execute(select(schema.blobs.c.name).where(schema.blobs.c.item_id == zipped.id))))
    assert len(names) == 4 and len(set(names)) == 4 and all(len(n) <= 64 for n in names)
