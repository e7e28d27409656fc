"""Ops: conversion events and the funnel."""
