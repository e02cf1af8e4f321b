"""Clinical resources as events: who, when, which code, what value.

Each mapped clinical resource type has one extractor that turns a resource into one or
more :class:`Event` tuples (an Observation with components gives one per component) or
raises :class:`Rejected` naming the missing element. Events hold raw FHIR strings;
dates, references and codes are resolved later a whole batch at a time
(:mod:`accord.ingest.fhir.routing`), which is what keeps the per-resource work small.

Which CDM table an event lands in is decided by its code's standard concept, not by the
resource type; ``default_table`` is where it goes when the code is unmapped. An event's
code is the one recorded at the source (:meth:`CodingChooser.choose_recorded`), which the
CDM keeps as its source value; a value's code is the one that says what it means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

from accord.ingest.fhir.codes import Code, CodingChooser
from accord.ingest.fhir.elements import (
    Rejected,
    coded,
    first,
    number,
    period_end,
    period_start,
    quantity,
    reference,
    status_code,
    text,
)
from accord.vocab import concepts

# Statuses saying the event did not happen or the record is void; such a resource is
# rejected with its status rather than counted as care that took place.
_VOID: Final = frozenset({"entered-in-error", "refuted", "not-done", "cancelled", "not-taken"})


class Event(NamedTuple):
    """One future CDM row, before dates, references and codes are resolved."""

    resource: int
    subject: str
    encounter: str | None
    performer: str | None
    start: str | None
    end: str | None
    code: Code
    type_concept_id: int
    default_table: str
    routed: bool = True
    value_number: float | None = None
    unit: str | None = None
    value_code: Code | None = None
    value_string: str | None = None
    range_low: float | None = None
    range_high: float | None = None
    quantity: float | None = None
    days_supply: int | None = None
    refills: int | None = None
    sig: str | None = None
    lot_number: str | None = None


Extractor = Callable[[dict[str, Any], int, CodingChooser], list[Event]]


def _subject(resource: dict[str, Any], element: str = "subject") -> str:
    subject = reference(resource.get(element))
    if subject is None:
        raise Rejected(f"{resource['resourceType']}.{element} is missing or has no reference")
    return subject


def _code(resource: dict[str, Any], element: str, chooser: CodingChooser) -> Code:
    code = chooser.choose_recorded(resource.get(element))
    if code is None:
        raise Rejected(f"{resource['resourceType']}.{element} is missing or has no coding")
    if not code.known:
        # No vocabulary to map it with: reject with the system named, so the steward can
        # add the code system (or its local concepts) and load the file again.
        raise Rejected(
            f"{resource['resourceType']}.{element} has no coding in a known code system",
            code.vocabulary,
        )
    return code


def _check_status(resource: dict[str, Any], *elements: str) -> None:
    for element in elements:
        value = resource.get(element)
        status = coded(resource, element) if isinstance(value, str) else status_code(value)
        if status in _VOID:
            raise Rejected(
                f"{resource['resourceType']}.{element} is {status}: not a record of care",
                status,
            )


def _when(resource: dict[str, Any], prefix: str) -> tuple[str | None, str | None]:
    """Start and end of an ``{prefix}[x]`` choice: dateTime, Period or instant."""
    moment = text(resource.get(f"{prefix}DateTime")) or text(resource.get(f"{prefix}Instant"))
    if moment is not None:
        return moment, None
    period = resource.get(f"{prefix}Period")
    return period_start(period), period_end(period)


def _required_start(resource: dict[str, Any], start: str | None, elements: str) -> str:
    if start is None:
        raise Rejected(f"{resource['resourceType']} has no {elements}; a start date is required")
    return start


def _performer(value: Any) -> str | None:
    """The first performer's actor (Procedure, Immunization) or reference (Observation)."""
    item = first(value)
    if isinstance(item, dict) and "actor" in item:
        return reference(item["actor"])
    return reference(item)


def condition(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    _check_status(resource, "verificationStatus")
    start, end = _when(resource, "onset")
    start = start or text(resource.get("recordedDate"))
    _, abatement_end = _when(resource, "abatement")
    abatement = text(resource.get("abatementDateTime")) or abatement_end
    return [
        Event(
            index,
            _subject(resource),
            reference(resource.get("encounter")),
            reference(resource.get("asserter")) or reference(resource.get("recorder")),
            _required_start(resource, start, "onset[x] or recordedDate"),
            abatement or end,
            _code(resource, "code", chooser),
            concepts.EHR,
            "condition_occurrence",
        )
    ]


def procedure(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    _check_status(resource, "status")
    start, end = _when(resource, "performed")
    return [
        Event(
            index,
            _subject(resource),
            reference(resource.get("encounter")),
            _performer(resource.get("performer")),
            _required_start(resource, start, "performed[x]"),
            end,
            _code(resource, "code", chooser),
            concepts.EHR,
            "procedure_occurrence",
        )
    ]


def _medication(resource: dict[str, Any], chooser: CodingChooser) -> Code:
    """The drug of a request or statement, looking into a contained Medication."""
    if "medicationCodeableConcept" in resource:
        return _code(resource, "medicationCodeableConcept", chooser)
    target = reference(resource.get("medicationReference"))
    if target is not None and target.startswith("#"):
        for contained in resource.get("contained") or ():
            if isinstance(contained, dict) and contained.get("id") == target[1:]:
                found = chooser.choose_recorded(contained.get("code"))
                if found is not None:
                    return found
    raise Rejected(
        f"{resource['resourceType']}.medication[x] has no coding "
        "(a reference to a separate Medication resource is not followed yet)"
    )


def medication_request(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    _check_status(resource, "status")
    dispense = resource.get("dispenseRequest")
    dispense = dispense if isinstance(dispense, dict) else {}
    supply, supply_unit = quantity(dispense.get("expectedSupplyDuration"))
    days = int(supply) if supply is not None and supply_unit in ("d", "day", "days") else None
    repeats = dispense.get("numberOfRepeatsAllowed")
    dosage = first(resource.get("dosageInstruction"))
    return [
        Event(
            index,
            _subject(resource),
            reference(resource.get("encounter")),
            reference(resource.get("requester")),
            _required_start(resource, text(resource.get("authoredOn")), "authoredOn"),
            period_end(dispense.get("validityPeriod")),
            _medication(resource, chooser),
            concepts.EHR_PRESCRIPTION,
            "drug_exposure",
            quantity=quantity(dispense.get("quantity"))[0],
            days_supply=days,
            refills=repeats if isinstance(repeats, int) and not isinstance(repeats, bool) else None,
            sig=text(dosage.get("text")) if isinstance(dosage, dict) else None,
        )
    ]


def medication_statement(
    resource: dict[str, Any], index: int, chooser: CodingChooser
) -> list[Event]:
    _check_status(resource, "status")
    start, end = _when(resource, "effective")
    start = start or text(resource.get("dateAsserted"))
    dosage = first(resource.get("dosage"))
    return [
        Event(
            index,
            _subject(resource),
            reference(resource.get("context")),
            reference(resource.get("informationSource")),
            _required_start(resource, start, "effective[x] or dateAsserted"),
            end,
            _medication(resource, chooser),
            concepts.EHR,
            "drug_exposure",
            sig=text(dosage.get("text")) if isinstance(dosage, dict) else None,
        )
    ]


def immunization(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    _check_status(resource, "status")
    start = text(resource.get("occurrenceDateTime")) or text(resource.get("occurrenceString"))
    return [
        Event(
            index,
            _subject(resource, "patient"),
            reference(resource.get("encounter")),
            _performer(resource.get("performer")),
            _required_start(resource, start, "occurrence[x]"),
            None,
            _code(resource, "vaccineCode", chooser),
            concepts.EHR,
            "drug_exposure",
            lot_number=text(resource.get("lotNumber")),
        )
    ]


def allergy_intolerance(
    resource: dict[str, Any], index: int, chooser: CodingChooser
) -> list[Event]:
    _check_status(resource, "verificationStatus")
    start, _ = _when(resource, "onset")
    start = start or text(resource.get("recordedDate"))
    # The code names the substance (a drug, a food), not the event, so its domain must
    # not route the row: an allergy is an observation about the person.
    return [
        Event(
            index,
            _subject(resource, "patient"),
            reference(resource.get("encounter")),
            reference(resource.get("asserter")) or reference(resource.get("recorder")),
            _required_start(resource, start, "onset[x] or recordedDate"),
            None,
            _code(resource, "code", chooser),
            concepts.EHR,
            "observation",
            routed=False,
        )
    ]


_MEASUREMENT_CATEGORIES: Final = frozenset({"laboratory", "vital-signs"})


def observation(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    _check_status(resource, "status")
    categories = {
        coding.get("code")
        for category in resource.get("category") or ()
        if isinstance(category, dict)
        for coding in category.get("coding") or ()
        if isinstance(coding, dict)
    }
    default = "measurement" if categories & _MEASUREMENT_CATEGORIES else "observation"
    type_concept = concepts.LAB if "laboratory" in categories else concepts.EHR
    start, end = _when(resource, "effective")
    start = _required_start(
        resource, start or text(resource.get("issued")), "effective[x] or issued"
    )
    subject = _subject(resource)
    encounter = reference(resource.get("encounter"))
    performer = _performer(resource.get("performer"))

    def event(element: dict[str, Any], code: Code) -> Event:
        value_number, unit = quantity(element.get("valueQuantity"))
        if value_number is None:
            value_number = number(element.get("valueInteger"))
        value_string = text(element.get("valueString"))
        if isinstance(element.get("valueBoolean"), bool):
            value_string = "true" if element["valueBoolean"] else "false"
        value_range = first(element.get("referenceRange"))
        bounds = value_range if isinstance(value_range, dict) else {}
        low, _ = quantity(bounds.get("low"))
        high, _ = quantity(bounds.get("high"))
        return Event(
            index,
            subject,
            encounter,
            performer,
            start,
            end,
            code,
            type_concept,
            default,
            value_number=value_number,
            unit=unit,
            value_code=chooser.choose(element.get("valueCodeableConcept")),
            value_string=value_string,
            range_low=low,
            range_high=high,
        )

    events: list[Event] = []
    has_value = any(key.startswith("value") for key in resource)
    components = [c for c in resource.get("component") or () if isinstance(c, dict)]
    if has_value or not components:
        events.append(event(resource, _code(resource, "code", chooser)))
    for position, component in enumerate(components):
        code = chooser.choose_recorded(component.get("code"))
        if code is None:
            raise Rejected(f"Observation.component[{position}].code has no coding")
        events.append(event(component, code))
    return events


def claim(resource: dict[str, Any], index: int, chooser: CodingChooser) -> list[Event]:
    """An insurer's Claim: a row per diagnosis and per item, billed as one visit.

    The events' encounter is left empty: they belong to the visit the Claim itself
    becomes (:mod:`accord.ingest.fhir.claims`), which fills it in.
    """
    _check_status(resource, "status")
    subject = _subject(resource, "patient")
    start = period_start(resource.get("billablePeriod")) or text(resource.get("created"))
    start = _required_start(resource, start, "billablePeriod.start or created")
    end = period_end(resource.get("billablePeriod"))
    provider = reference(resource.get("provider"))
    events: list[Event] = []
    for position, diagnosis in enumerate(resource.get("diagnosis") or ()):
        if not isinstance(diagnosis, dict) or "diagnosisCodeableConcept" not in diagnosis:
            continue  # a diagnosisReference names a Condition, loaded in its own right
        code = _known(
            chooser.choose_recorded(diagnosis["diagnosisCodeableConcept"]),
            f"Claim.diagnosis[{position}].diagnosisCodeableConcept",
        )
        events.append(
            Event(
                index,
                subject,
                None,
                provider,
                start,
                end,
                code,
                concepts.CLAIM,
                "condition_occurrence",
            )
        )
    for position, item in enumerate(resource.get("item") or ()):
        if not isinstance(item, dict):
            continue
        code = _known(
            chooser.choose_recorded(item.get("productOrService")),
            f"Claim.item[{position}].productOrService",
        )
        served, served_end = _when(item, "serviced")
        if served is None:
            served = text(item.get("servicedDate"))
        events.append(
            Event(
                index,
                subject,
                None,
                provider,
                served or start,
                served_end if served else end,
                code,
                concepts.CLAIM,
                "procedure_occurrence",
                quantity=quantity(item.get("quantity"))[0],
            )
        )
    return events


def _known(code: Code | None, element: str) -> Code:
    if code is None:
        raise Rejected(f"{element} has no coding")
    if not code.known:
        raise Rejected(f"{element} has no coding in a known code system", code.vocabulary)
    return code


EXTRACTORS: Final[dict[str, Extractor]] = {
    "Condition": condition,
    "Procedure": procedure,
    "MedicationRequest": medication_request,
    "MedicationStatement": medication_statement,
    "Immunization": immunization,
    "AllergyIntolerance": allergy_intolerance,
    "Observation": observation,
}
"""The clinical resource types mapped to CDM event tables, each with its extractor."""
