"""What a person sees of a C-CDA document: the readable view, from hostile XML.

The view holds title, patient, author, date and each section's title and
narrative; a document with a DTD, an entity or an external reference is
refused before anything is expanded or fetched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records_bridge import cda_view
from records_bridge.cda_view import (
    CdaView,
    ListBlock,
    NotReadable,
    Paragraph,
    Table,
    Unreadable,
    read_cda,
)
from tests.messages import CCDA
from tests.test_records_store import CCD, DISCHARGE

# A C-CDA R2.1 Continuity of Care Document as EHRs send them (shortened: three
# sections, narrative tables, a nested section, a br and styled content).
SAMPLE_CCD = b"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:sdtc="urn:hl7-org:sdtc"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="US"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.1" extension="2015-08-01"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/>
  <id root="2.16.840.1.113883.19.5.99999.1" extension="TT988"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summarization of Episode Note"/>
  <title>Summary of Care &amp; Visit</title>
  <effectiveTime value="20261201143000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget>
    <patientRole>
      <id extension="444-22-2222" root="2.16.840.1.113883.4.1"/>
      <patient>
        <name use="L"><prefix>Ms.</prefix><given>Eve</given><given>Maria</given><family>Everywoman</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="19750501"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="20261201143000+0100"/>
    <assignedAuthor>
      <id root="2.16.840.1.113883.4.6" extension="99999999"/>
      <assignedPerson><name><given>Henry</given><family>Seven</family><suffix>MD</suffix></name></assignedPerson>
      <representedOrganization><name>Good Health Clinic</name></representedOrganization>
    </assignedAuthor>
  </author>
  <component>
    <structuredBody>
      <component>
        <section>
          <templateId root="2.16.840.1.113883.10.20.22.2.6.1" extension="2015-08-01"/>
          <code code="48765-2" codeSystem="2.16.840.1.113883.6.1"/>
          <title>Allergies and Adverse Reactions</title>
          <text>
            <table border="1" width="100%">
              <thead><tr><th>Substance</th><th>Reaction</th><th>Status</th></tr></thead>
              <tbody>
                <tr ID="allergy1"><td><content ID="s1">Penicillin G benzathine</content></td><td>Hives</td><td>Active</td></tr>
                <tr><td>Codeine</td><td>Shortness of breath<br/>Nausea</td><td>Active</td></tr>
              </tbody>
            </table>
          </text>
        </section>
      </component>
      <component>
        <section>
          <code code="10160-0" codeSystem="2.16.840.1.113883.6.1"/>
          <title>Medications</title>
          <text>
            <list listType="ordered">
              <item>Albuterol 0.09 MG/ACTUATION inhalant solution, 2 puffs every 6 hours</item>
              <item><content styleCode="Bold">Lisinopril</content> 10 mg daily</item>
            </list>
          </text>
        </section>
      </component>
      <component>
        <section>
          <code code="11450-4" codeSystem="2.16.840.1.113883.6.1"/>
          <title>Problems</title>
          <text>Patient reports <content styleCode="Italics">occasional</content> wheezing.
            <paragraph>Asthma, mild intermittent, since 2010.</paragraph>
          </text>
          <component>
            <section>
              <title>Problem details</title>
              <text><paragraph>Reviewed &lt;2026-12-01&gt; by Dr Seven.</paragraph></text>
            </section>
          </component>
        </section>
      </component>
    </structuredBody>
  </component>
</ClinicalDocument>
"""


def test_a_ccd_reads_as_title_patient_author_date_and_sections():
    view = read_cda(SAMPLE_CCD)
    assert isinstance(view, CdaView)
    assert view.title == "Summary of Care & Visit"
    assert view.patient == "Ms. Eve Maria Everywoman"
    assert view.birth_date == "1975-05-01"
    assert view.author == "Henry Seven MD, Good Health Clinic"
    assert view.date == "2026-12-01 14:30 +0100"
    assert [s.title for s in view.sections] == ["Allergies and Adverse Reactions", "Medications", "Problems"]
    assert [s.code for s in view.sections] == ["48765-2", "10160-0", "11450-4"]


def test_narrative_tables_lists_and_paragraphs_keep_their_shape():
    view = read_cda(SAMPLE_CCD)
    assert isinstance(view, CdaView)
    allergies, medications, problems = view.sections
    assert allergies.blocks == (
        Table(
            caption=None,
            head=(("Substance", "Reaction", "Status"),),
            body=(("Penicillin G benzathine", "Hives", "Active"), ("Codeine", "Shortness of breath / Nausea", "Active")),
        ),
    )
    assert medications.blocks == (
        ListBlock(ordered=True, items=(
            "Albuterol 0.09 MG/ACTUATION inhalant solution, 2 puffs every 6 hours", "Lisinopril 10 mg daily",
        )),
    )
    assert problems.blocks == (
        Paragraph(("Patient reports occasional wheezing.",)),
        Paragraph(("Asthma, mild intermittent, since 2010.",)),
    )
    (details,) = problems.sections
    assert details.title == "Problem details"
    assert details.blocks == (Paragraph(("Reviewed <2026-12-01> by Dr Seven.",)),)


@pytest.mark.parametrize(
    ("document", "title"),
    [(CCDA, "Continuity of Care Document"), (CCD, "CCD"), (DISCHARGE, "CCD")],
    ids=["messages-ccda", "store-ccd", "store-discharge"],
)
def test_the_minimal_documents_of_the_other_tests_read_without_sections(document, title):
    view = read_cda(document)
    assert isinstance(view, CdaView)
    assert (view.title, view.sections, view.patient, view.author, view.date) == (title, (), None, None, None)


def test_a_section_without_title_is_named_by_its_code_and_a_document_without_title_by_its_type():
    doc = (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="18842-5" displayName="Discharge summary"/>'
           b'<component><structuredBody><component><section><code code="8648-8" displayName="Hospital course"/>'
           b"</section></component></structuredBody></component></ClinicalDocument>")
    view = read_cda(doc)
    assert isinstance(view, CdaView)
    assert view.title == "Discharge summary"
    assert view.sections[0].title == "Hospital course"


def test_an_unstructured_document_says_what_it_holds():
    doc = (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Scanned referral</title><component><nonXMLBody>'
           b'<text mediaType="application/pdf" representation="B64">JVBERi0=</text></nonXMLBody></component>'
           b"</ClinicalDocument>")
    view = read_cda(doc)
    assert isinstance(view, CdaView) and view.unstructured == "application/pdf" and view.sections == ()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>
"""


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BILLION_LAUGHS, Unreadable.DTD_REFUSED),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>', Unreadable.DTD_REFUSED),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
         b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>', Unreadable.DTD_REFUSED),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>'
         b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>', Unreadable.DTD_REFUSED),
        (b'<!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:9/cda.dtd">'
         b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>', Unreadable.DTD_REFUSED),
        (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&undeclared;</title></ClinicalDocument>',
         Unreadable.MALFORMED),
        (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>unclosed', Unreadable.MALFORMED),
        (b"", Unreadable.MALFORMED),
        (b"%PDF-1.4\n", Unreadable.MALFORMED),
        (b"<ClinicalDocument><title>no namespace</title></ClinicalDocument>", Unreadable.NOT_CDA),
        (b'<ContinuityOfCareRecord xmlns="urn:astm-org:CCR"/>', Unreadable.NOT_CDA),
        (b'<ClinicalDocument xmlns="urn:hl7-org:v3">' + b"<x>" * 200 + b"</x>" * 200 + b"</ClinicalDocument>",
         Unreadable.TOO_COMPLEX),
    ],
    ids=["billion-laughs", "external-file-entity", "external-http-entity", "parameter-entity", "external-dtd",
         "undeclared-entity", "truncated", "empty", "pdf", "no-namespace", "ccr", "too-deep"],
)
def test_hostile_or_foreign_documents_are_refused_with_a_reason(document, reason):
    assert read_cda(document) == NotReadable(reason)


def test_the_billion_laughs_is_refused_before_any_expansion():
    started = time.perf_counter()
    assert read_cda(BILLION_LAUGHS) == NotReadable(Unreadable.DTD_REFUSED)
    assert time.perf_counter() - started < 0.1


def test_size_and_element_count_are_bounded(monkeypatch):
    assert read_cda(b" " * (cda_view.MAX_DOCUMENT_BYTES + 1)) == NotReadable(Unreadable.TOO_LARGE)
    monkeypatch.setattr(cda_view, "MAX_ELEMENTS", 50)
    many = b'<ClinicalDocument xmlns="urn:hl7-org:v3">' + b"<id/>" * 60 + b"</ClinicalDocument>"
    assert read_cda(many) == NotReadable(Unreadable.TOO_COMPLEX)


def test_sections_are_bounded(monkeypatch):
    monkeypatch.setattr(cda_view, "MAX_SECTIONS", 2)
    assert read_cda(SAMPLE_CCD) == NotReadable(Unreadable.TOO_COMPLEX)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_view_or_a_reason(data):
    assert isinstance(read_cda(data), CdaView | NotReadable)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_narrative_text_gives_a_view_or_a_reason(text):
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").encode("utf-8", "surrogatepass")
    doc = (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><component><structuredBody><component><section><title>T</title>'
           b"<text>" + escaped + b"</text></section></component></structuredBody></component></ClinicalDocument>")
    assert isinstance(read_cda(doc), CdaView | NotReadable)


EXAMPLE_DISCHARGE = Path(__file__).resolve().parent.parent / "examples" / "discharge-summary.xml"


def test_the_example_discharge_summary_reads_with_its_five_sections():
    view = read_cda(EXAMPLE_DISCHARGE.read_bytes())
    assert isinstance(view, CdaView)
    assert (view.title, view.patient, view.author, view.date) == (
        "Discharge Summary: Jane Doe", "Jane Doe", "Dr. Alice Smith, Springfield General Hospital", "2026-12-01 15:30 -0500",
    )
    assert [s.title for s in view.sections] == [
        "Hospital Course", "Discharge Diagnosis", "Discharge Medications", "Allergies", "Plan of Treatment",
    ]
