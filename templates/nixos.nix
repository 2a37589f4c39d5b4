{%- for line in header %}
# {{ line }}
{%- endfor %}
{
{%- for u in units %}
  systemd.{{ u.collection }}.{{ u.attr_name }} = {
{%- for a in u.top %}
{%- if explain %}
    # {{ a.why }}
{%- endif %}
    {{ a.name }} = {{ a.value }};
{%- endfor %}
{%- for set in u.sets %}
    {{ set.name }} = {
{%- for a in set.attrs %}
{%- if explain %}
      # {{ a.why }}
{%- endif %}
      {{ a.name }} = {{ a.value }};
{%- endfor %}
    };
{%- endfor %}
  };
{%- endfor %}
}
