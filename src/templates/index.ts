// The templates component's public surface: import from here, not from its files.
export { createTemplateStore } from './store.ts';
export type {
  Template,
  TemplateLimits,
  TemplateStore,
  TemplateStart,
  TemplateStoreOptions,
} from './store.ts';
export { validateTemplateName } from './recipe.ts';
