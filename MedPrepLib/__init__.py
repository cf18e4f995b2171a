"""MedPrepLib: DICOM discovery, headers, de-identification, NIfTI conversion and preprocessing.

Importable without 3D Slicer. The `medprep` command line, the dataset runner and the Slicer
module all call the functions of this package with the same parameters.
"""
__version__ = "0.1.0"
