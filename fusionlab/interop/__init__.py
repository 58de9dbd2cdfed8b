"""Adapters in and out of other libraries' formats (AdapterHub's ``adapters``)."""
