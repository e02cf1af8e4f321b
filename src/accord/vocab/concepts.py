"""Named OMOP concept ids, so analyses say ``HYPERTENSION`` rather than ``320128``.

Every id here is a row of the starter vocabulary (``starter/CONCEPT.csv``); ids of
2,000,000,000 and above are local to Accord (see ``starter/SOURCES.md``). Ids below that
are the real OMOP ids, so an Athena vocabulary loaded later agrees with them.

Condition and drug concepts are meant to be used with their descendants: source codes
map to the most specific standard concept (ICD-10-CM E11.9 maps to "Type 2 diabetes
mellitus without complication", a descendant of ``TYPE_2_DIABETES``), and drug classes
(``BETA_BLOCKERS``) are ATC classifications whose members are RxNorm ingredients.
"""

from __future__ import annotations

from typing import Final

NO_MATCHING_CONCEPT: Final = 0
LOCAL_CONCEPT_ID_START: Final = 2_000_000_000

# Demographics
MALE: Final = 8507
FEMALE: Final = 8532
ASIAN: Final = 8515
BLACK_OR_AFRICAN_AMERICAN: Final = 8516
WHITE: Final = 8527
HISPANIC_OR_LATINO: Final = 38003563
NOT_HISPANIC_OR_LATINO: Final = 38003564

# Visits
INPATIENT_VISIT: Final = 9201
OUTPATIENT_VISIT: Final = 9202
EMERGENCY_ROOM_VISIT: Final = 9203

# Type concepts: where a record came from
CLAIM: Final = 32810
CLAIM_ENROLMENT_RECORD: Final = 32813
COST_RECORD: Final = 32814
DEATH_CERTIFICATE: Final = 32815
EHR: Final = 32817
EHR_ENCOUNTER_RECORD: Final = 32827
EHR_PRESCRIPTION: Final = 32838
LAB: Final = 32856
PHARMACY_CLAIM: Final = 32869
REGISTRY: Final = 32879

# Units and currency
MILLIMETER_MERCURY: Final = 8876
PERCENT: Final = 8554
KILOGRAM_PER_SQUARE_METER: Final = 9531
US_DOLLAR: Final = 44818668

# Measurements (LOINC)
SYSTOLIC_BP: Final = 3004249
DIASTOLIC_BP: Final = 3012888
HBA1C: Final = 3004410
BMI: Final = 3038553

# Conditions (standard SNOMED concepts)
HYPERTENSIVE_DISORDER: Final = 316866
HYPERTENSION: Final = 320128
TYPE_2_DIABETES: Final = 201826
TYPE_2_DIABETES_WITHOUT_COMPLICATION: Final = 4230254
INFLUENZA: Final = 4266367
INFLUENZAL_ACUTE_URI: Final = 4183609
ASTHMA: Final = 317009
HYPERLIPIDEMIA: Final = 432867
ACUTE_BRONCHITIS: Final = 260139
COPD: Final = 255573
DEPRESSION: Final = 4282096
KNEE_OSTEOARTHRITIS: Final = 4079750

# Condition source codes (non-standard; each has a 'Maps to' row)
ICD10CM_I10: Final = 35207668
ICD10CM_E11_9: Final = 45561952
ICD10CM_J11_1: Final = 2_000_001_001
ICD10CM_J45_909: Final = 2_000_001_002
ICD10CM_E78_5: Final = 2_000_001_003
ICD10CM_J20_9: Final = 2_000_001_004
ICD10CM_J44_9: Final = 2_000_001_005
ICD10CM_F32_9: Final = 2_000_001_006
ICD10CM_M17_10: Final = 2_000_001_007
ICD9CM_401_9: Final = 44821949
ICD9CM_250_00: Final = 44836914
ICD9CM_487_1: Final = 2_000_002_001
ICD9CM_493_90: Final = 2_000_002_002
ICD9CM_272_4: Final = 2_000_002_003
ICD9CM_466_0: Final = 2_000_002_004
ICD9CM_496: Final = 2_000_002_005
ICD9CM_296_20: Final = 2_000_002_006
ICD9CM_715_16: Final = 2_000_002_007

# Procedures
ECG: Final = 4163951
GENERAL_EXAMINATION: Final = 4036803
FLU_VACCINATION: Final = 2_000_003_001

# Drug ingredients (RxNorm)
METOPROLOL: Final = 1307046
ATENOLOL: Final = 1314002
BISOPROLOL: Final = 1338005
CARVEDILOL: Final = 1346823
PROPRANOLOL: Final = 1353766
LISINOPRIL: Final = 1308216
ENALAPRIL: Final = 1341927
RAMIPRIL: Final = 1334456
METFORMIN: Final = 1503297
AMLODIPINE: Final = 1332418
ATORVASTATIN: Final = 1545958
OSELTAMIVIR: Final = 1799139

# Drug classes (ATC); their ingredients are descendants in concept_ancestor
BETA_BLOCKERS: Final = 21601664
ACE_INHIBITORS: Final = 21601783
BIGUANIDES: Final = 21600745
CALCIUM_CHANNEL_BLOCKERS: Final = 21601744
STATINS: Final = 21601855

BETA_BLOCKER_INGREDIENTS: Final = (METOPROLOL, ATENOLOL, BISOPROLOL, CARVEDILOL, PROPRANOLOL)
ACE_INHIBITOR_INGREDIENTS: Final = (LISINOPRIL, ENALAPRIL, RAMIPRIL)
