"""Passages the answer and context tests share."""

from lectern.types import Chunk

FEES = Chunk(
    1,
    "fees",
    "Home students pay EUR 2,390. International students pay EUR 9,800.",
    "/d/fees.pdf",
    "Tuition Fees",
    "BA History",
    2,
)
CSC = Chunk(
    2,
    "csc",
    "CSC 340 Machine Learning requires CSC 210 and MAT 220. It is taught by Dr. Ilse Marrow.",
    "/d/cs.html",
    "BSc Computer Science",
    "CSC 340",
)
