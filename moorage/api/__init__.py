"""Transports only: parse → call a control service → serialize."""
