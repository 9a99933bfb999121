import streamlit as st

st.title("Network")
st.info("This page is being built.")
